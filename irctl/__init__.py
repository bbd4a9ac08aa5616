"""irctl: incident response for fleets of cache proxies."""

__version__ = "0.1.0"
