"""Packaged task configurations (the demo reads its fraud pipeline from here)."""
