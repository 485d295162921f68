"""MonoTAKD's student-side modules kept at inference: residual branch (with SAM) and FFM."""
