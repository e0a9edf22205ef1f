"""The bundled demo chat service: a real Socket.IO server with a scripted assistant.

``DemoChatService`` speaks the multiplexed protocol (providers.md §6 A) on a loopback port, so a
new user sees the whole path work in one command and tests get an instant, deterministic chat
service. See ``server`` for the protocol and ``script`` for the JSON Lines script format.
"""

from .assistant import answer
from .markup import markdown_to_html
from .script import ScriptedReply, load_script, parse_reply, parse_script
from .server import DemoChatService, Received

__all__ = [
           "DemoChatService",
           "Received",
           "ScriptedReply",
           "answer",
           "load_script",
           "markdown_to_html",
           "parse_reply",
           "parse_script",
]
