// Swagger UI on the service's own OpenAPI document. A key the console signed in with (this tab's
// sessionStorage) is filled in, so "Try it out" works at once.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    onComplete: () => {
      const key = sessionStorage.getItem("facerec.key");
      if (key) window.ui.preauthorizeApiKey("apiKey", key);
    },
  });
});
