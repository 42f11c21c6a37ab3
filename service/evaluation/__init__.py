"""Measuring the pipeline on labelled photos (``facerec evaluate``) and choosing a threshold from
them (``facerec calibrate``): inputs, cached encodings, metrics, the report and its figures."""
