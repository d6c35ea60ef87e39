"""Stand-in for PyAV (av), which picamera2 0.3.13 to 0.3.33 import at module level (its
encoders; v0.3.34 made the import lazy). Nothing of it runs in the contract test."""
