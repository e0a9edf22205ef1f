"""Pure renderers: envelope events -> what the client reads. No parsing, no IO."""

from .tool_calls import arguments_json, message_tool_calls, tool_call_deltas
from .xml_tools import render_xml, text_with_xml, xml_clash

__all__ = ["arguments_json", "message_tool_calls", "render_xml", "text_with_xml", "tool_call_deltas", "xml_clash"]
