"""RooGab: an OpenAI-compatible API in front of a browser chat service, for coding agents."""

__version__ = "0.1.0"
