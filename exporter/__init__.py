"""cmc.exporter: load -> shrink -> export -> build -> verify -> report, and the cmc-export CLI."""
__version__ = "0.1.0"
