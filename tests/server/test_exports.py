"""The public API of forkpath.server is what its __all__ says, pinned here."""

from __future__ import annotations

import forkpath.server


def test_server_exports() -> None:
    assert set(forkpath.server.__all__) == {
        "DEFAULT_ALLOWED",
        "ROUTE_MODULES",
        "ServerConfig",
        "Serving",
        "create_app",
        "create_view_app",
        "load_flow_models",
        "parse_target",
    }
    for name in forkpath.server.__all__:
        assert hasattr(forkpath.server, name)


def test_parse_target_is_unambiguous_with_model_names() -> None:
    from forkpath.server import parse_target

    flows = {"my-flow": object()}
    assert parse_target("my-flow", flows) == ("flow", "my-flow", {})  # type: ignore[arg-type]
    assert parse_target("best_of_n:local/qwen2.5-coder-0.5b", {}) == (
        "strategy",
        "best_of_n",
        {"*": "local/qwen2.5-coder-0.5b"},
    )
    # ':' inside a model name: only the first one separates, and only after an identifier.
    assert parse_target("best_of_n:ollama/llama3:8b", {}) == (
        "strategy",
        "best_of_n",
        {"*": "ollama/llama3:8b"},
    )
    assert parse_target("ollama/llama3:8b", {}) == ("model", "ollama/llama3:8b", {})
    assert parse_target("gpt-4o-mini:2024", {}) == ("model", "gpt-4o-mini:2024", {})
    assert parse_target("cascade:small=local/smollm2-135m,large=openai/gpt-4o-mini", {}) == (
        "strategy",
        "cascade",
        {"small": "local/smollm2-135m", "large": "openai/gpt-4o-mini"},
    )
    # A comma inside a model name stays in it (only ",identifier=" starts the next role).
    assert parse_target("cascade:small=a/b,c,large=d/e", {}) == (
        "strategy",
        "cascade",
        {"small": "a/b,c", "large": "d/e"},
    )


def test_responses_are_strict_json() -> None:
    import json
    import math

    import numpy as np

    from forkpath.server._run import json_bytes

    value = {
        "a": np.float32(1.5),
        "b": np.int64(3),
        "c": np.arange(3),
        "d": -math.inf,
        "e": [math.nan],
        2: "x",
    }
    text = json_bytes(value).decode()
    assert json.loads(text) == {"a": 1.5, "b": 3, "c": [0, 1, 2], "d": None, "e": [None], "2": "x"}
    assert "NaN" not in text and "Infinity" not in text
    assert json_bytes({"é": "ü"}).decode() == '{"é":"ü"}'  # UTF-8, not escaped
