"""Input events: the user-facing vocabulary and its translation from RFB messages.

RFB carries button *masks* and X11 *keysyms*; users get DOM-like events instead, the same
vocabulary the notebook widget produces:

* ``pointer_move`` / ``pointer_down`` / ``pointer_up``: ``x, y, button, buttons, modifiers`` where
  ``button`` is the DOM button number (0 left, 1 middle, 2 right, 3 back, 4 forward) and
  ``buttons`` the DOM bit mask of buttons held (1 left, 2 right, 4 middle, 8 back, 16 forward);
* ``wheel``: ``x, y, dx, dy`` in notches (RFB buttons 4/5 are dy -1/+1, 6/7 are dx -1/+1);
* ``key_down`` / ``key_up``: ``key``, ``code``, ``keysym``, ``modifiers``;
* ``clipboard``: ``text``; ``resize``: ``width``, ``height`` (a client's SetDesktopSize).

``modifiers`` is a sorted list drawn from ``"Alt"``, ``"AltGraph"``, ``"Control"``, ``"Meta"``,
``"Shift"``: the modifier keys this client currently holds.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .keysyms import MODIFIER_KEYSYMS, keysym_to_key, scancode_to_code


@dataclass(frozen=True)
class InputEvent:
    """One input event from one client.

    ``client_id`` identifies the session, ``principal`` is who authenticated (``None`` without
    authentication), ``event`` is the dict described in this module's docstring and
    ``received_us`` the wall-clock time (microseconds since the epoch) it arrived.
    """

    client_id: int
    principal: Any
    event: dict[str, Any]
    received_us: int = field(default_factory=lambda: time.time_ns() // 1000)

    @property
    def type(self) -> str:
        return str(self.event["type"])


# RFB mask bit -> (DOM button number, DOM buttons bit)
_BUTTONS = {0: (0, 1), 1: (1, 4), 2: (2, 2), 7: (3, 8), 8: (4, 16)}
_WHEEL = {3: (0, -1), 4: (0, 1), 5: (-1, 0), 6: (1, 0)}


class InputTranslator:
    """Per-client state that turns KeyEvent / PointerEvent messages into event dicts."""

    def __init__(self) -> None:
        self.mask = 0
        self.x = -1
        self.y = -1
        self._held_modifiers: dict[int, str] = {}

    @property
    def modifiers(self) -> list[str]:
        return sorted(set(self._held_modifiers.values()))

    def key(self, down: bool, keysym: int, scancode: int | None = None) -> dict[str, Any]:
        key, code = keysym_to_key(keysym)
        if scancode is not None:
            code = scancode_to_code(scancode) or code
        modifier = MODIFIER_KEYSYMS.get(keysym)
        if modifier is not None:
            if down:
                self._held_modifiers[keysym] = modifier
            else:
                self._held_modifiers.pop(keysym, None)
        return {
            "type": "key_down" if down else "key_up",
            "key": key,
            "code": code,
            "keysym": keysym,
            "modifiers": self.modifiers,
        }

    def _dom_buttons(self, mask: int) -> int:
        return sum(bit for index, (_, bit) in _BUTTONS.items() if mask & (1 << index))

    def pointer(self, mask: int, x: int, y: int) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        mods = self.modifiers
        if (x, y) != (self.x, self.y):
            self.x, self.y = x, y
            events.append(
                {"type": "pointer_move", "x": x, "y": y, "button": -1,
                 "buttons": self._dom_buttons(self.mask), "modifiers": mods}
            )  # fmt: skip
        changed = mask ^ self.mask
        previous = self.mask
        self.mask = mask
        for index in range(16):
            bit = 1 << index
            if not changed & bit:
                continue
            pressed = bool(mask & bit)
            if index in _WHEEL:
                if pressed:
                    dx, dy = _WHEEL[index]
                    events.append({"type": "wheel", "x": x, "y": y, "dx": dx, "dy": dy, "modifiers": mods})
                continue
            if index not in _BUTTONS:
                continue
            # 'buttons' reflects the state after this button changed, as in the DOM.
            after = (previous & ~bit) | (mask & bit)
            previous = after
            events.append(
                {"type": "pointer_down" if pressed else "pointer_up", "x": x, "y": y,
                 "button": _BUTTONS[index][0], "buttons": self._dom_buttons(after), "modifiers": mods}
            )  # fmt: skip
        return events


class EventQueue:
    """Bounded FIFO of :class:`InputEvent`; when full the oldest event is dropped (and counted)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("event_queue_size must be at least 1")
        self._items: collections.deque[InputEvent] = collections.deque(maxlen=maxsize)
        self._nonempty = asyncio.Event()
        self.dropped = 0
        self._closed = False

    def put(self, event: InputEvent) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(event)
        self._nonempty.set()

    def drain(self) -> list[InputEvent]:
        items = list(self._items)
        self._items.clear()
        self._nonempty.clear()
        return items

    def close(self) -> None:
        self._closed = True
        self._nonempty.set()

    async def __aiter__(self) -> AsyncIterator[InputEvent]:
        while True:
            while not self._items:
                if self._closed:
                    return
                self._nonempty.clear()
                await self._nonempty.wait()
            yield self._items.popleft()
