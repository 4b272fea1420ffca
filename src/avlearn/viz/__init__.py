"""Plots written into run folders (event timelines, masks, curves)."""
