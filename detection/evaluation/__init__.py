"""Detector evaluation on real bars with injected, labelled anomalies (`make eval`)."""
