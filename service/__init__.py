"""facerec: face verification and recognition on FaceNet (domain, pipeline and front ends)."""
