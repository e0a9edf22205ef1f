"""What to paste into each client: the one text the CLI prints and the status page shows."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["client_settings", "codex_settings"]


def client_settings(base_url: str, models: Sequence[str], key_hint: str) -> str:
    """Plain-text instructions for Zoo Code, Cline, Kilo Code, Claude Code, Codex and the SDKs."""
    model = models[0] if models else "<model>"
    api = f"{base_url}/v1"
    lines = [
        f"Base URL : {api}",
        f"API key  : {key_hint}",
        f"Models   : {', '.join(models) or '(none yet)'}",
        "",
        "Zoo Code  : Settings > Providers > API Provider 'OpenAI Compatible' (as in Roo Code, which it forks)",
        f"            Base URL {api}, API Key as above, Model {model}",
        "Cline     : Settings > API Provider 'OpenAI Compatible'",
        f"            Base URL {api}, API Key as above, Model ID {model}",
        "Kilo Code : in its opencode.json config, a custom provider with \"npm\": \"@ai-sdk/openai-compatible\",",
        f"            \"options\": {{\"baseURL\": \"{api}\", \"apiKey\": \"<key>\"}}, \"models\": {{\"{model}\": {{}}}}",
        f"Claude Code: ANTHROPIC_BASE_URL={base_url} ANTHROPIC_API_KEY=<key> claude --model {model}",
        "            (Anthropic Messages at /v1/messages; ANTHROPIC_AUTH_TOKEN works too)",
        "OpenAI SDK: OpenAI(base_url=\"" + api + "\", api_key=\"<key>\")"
        f".chat.completions.create(model=\"{model}\", ...)",
        (f"curl      : curl {api}/chat/completions -H 'Content-Type: application/json' "
        f"-d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"hello\"}}]}}'"),
        *codex_settings(api, model),
    ]
    return "\n".join(lines)


def codex_settings(api: str, model: str) -> list[str]:
    """Codex CLI: a model provider in ~/.codex/config.toml speaking OpenAI Responses."""
    return [
        "Codex CLI : in ~/.codex/config.toml (then run codex with ROOGAB_API_KEY=<key> set):",
        f'              model = "{model}"',
        '              model_provider = "roogab"',
        "              [model_providers.roogab]",
        '              name = "RooGab"',
        f'              base_url = "{api}"',
        '              env_key = "ROOGAB_API_KEY"',
        '              wire_api = "responses"',
    ]
