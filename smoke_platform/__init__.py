"""smoke-platform: IoT smoke-detection data platform."""

__version__ = "0.1.0"
