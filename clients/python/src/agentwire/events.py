"""The session's event envelopes, as the server and every client read them."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

Event = Dict[str, Any]

ROLE_USER = "user"
ROLE_ASSISTANT = "assistant"
CONTROL_PREFIX = "control."
CONTROL_ACK = "control.ack"


def message_start(id: str, role: str = ROLE_ASSISTANT, parent: Optional[str] = None) -> Event:
    event: Event = {"type": "message.start", "id": id, "role": role}
    if parent is not None:
        event["parent"] = parent
    return event


def message_delta(id: str, text: str) -> Event:
    return {"type": "message.delta", "id": id, "data": {"text": text}}


def message_end(id: str, stopped: bool = False) -> Event:
    event: Event = {"type": "message.end", "id": id}
    if stopped:
        event["data"] = {"stopped": True}
    return event


def user_message(id: str, user: str, text: str) -> List[Event]:
    """A whole message a person wrote, as the browser client sends it."""
    return [
        {"type": "message.start", "id": id, "role": ROLE_USER, "user": user},
        message_delta(id, text),
        {"type": "message.end", "id": id, "role": ROLE_USER},
    ]


def control(kind: str, data: Optional[Dict[str, Any]] = None) -> Event:
    event: Event = {"type": CONTROL_PREFIX + kind}
    if data is not None:
        event["data"] = data
    return event


def control_ack(ref: str, kind: str, cut: str) -> Event:
    """The control at offset `ref` was acted on; this agent's output stopped at `cut`."""
    return {"type": CONTROL_ACK, "data": {"ref": ref, "kind": kind, "cut": cut}}


def tool_call(id: str, tool: str, arguments: Any = None) -> Event:
    """`data.arguments` apart from the name, so no argument can shadow `tool`."""
    return {"type": "tool.call", "id": id, "data": {"tool": tool, "arguments": arguments or {}}}


def tool_result(id: str, result: Any, is_error: bool = False) -> Event:
    data: Dict[str, Any] = {"result": result}
    if is_error:
        data["is_error"] = True
    return {"type": "tool.result", "id": id, "data": data}


def agent_status(data: Dict[str, Any]) -> Event:
    return {"type": "agent.status", "data": data}


def control_kind(event: Any) -> Optional[str]:
    """`cancel`, `steer`, … for a control request; None for anything else (acks included)."""
    if not isinstance(event, dict):
        return None
    kind = event.get("type")
    if not isinstance(kind, str) or not kind.startswith(CONTROL_PREFIX) or kind == CONTROL_ACK:
        return None
    return kind[len(CONTROL_PREFIX) :]
