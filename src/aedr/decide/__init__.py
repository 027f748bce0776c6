"""Deciding: statistics of measurements, thresholds, verdicts and their evaluation."""
