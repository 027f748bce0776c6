"""Measuring: images in, method-free measurements with provenance out (nothing here decides)."""
