from __future__ import annotations

from pdum.rfb.events import InputTranslator
from pdum.rfb.keysyms import keysym_to_key, scancode_to_code


def test_keysyms() -> None:
    assert keysym_to_key(0x61) == ("a", "KeyA")
    assert keysym_to_key(0x41) == ("A", "KeyA")
    assert keysym_to_key(0x31) == ("1", "Digit1")
    assert keysym_to_key(0x21) == ("!", "Digit1")
    assert keysym_to_key(0xFF0D) == ("Enter", "Enter")
    assert keysym_to_key(0xFF51) == ("ArrowLeft", "ArrowLeft")
    assert keysym_to_key(0xFFBE) == ("F1", "F1")
    assert keysym_to_key(0xFFE1) == ("Shift", "ShiftLeft")
    assert keysym_to_key(0x20) == (" ", "Space")
    assert keysym_to_key(0xE9) == ("\u00e9", "")
    assert keysym_to_key(0x010020AC) == ("\u20ac", "")
    assert keysym_to_key(0x12345) == ("Unidentified", "")
    assert scancode_to_code(0x1E) == "KeyA" and scancode_to_code(0xC8) == "ArrowUp"


def test_modifiers_tracked() -> None:
    t = InputTranslator()
    t.key(True, 0xFFE3)
    ev = t.key(True, 0x63)
    assert ev == {"type": "key_down", "key": "c", "code": "KeyC", "keysym": 0x63, "modifiers": ["Control"]}
    t.key(False, 0xFFE3)
    assert t.key(False, 0x63)["modifiers"] == []


def test_pointer_buttons_and_wheel() -> None:
    t = InputTranslator()
    events = t.pointer(0b001, 5, 6)
    assert [e["type"] for e in events] == ["pointer_move", "pointer_down"]
    assert events[1]["button"] == 0 and events[1]["buttons"] == 1
    events = t.pointer(0b101, 5, 6)  # right pressed too
    assert events == [{"type": "pointer_down", "x": 5, "y": 6, "button": 2, "buttons": 3, "modifiers": []}]
    events = t.pointer(0b000, 7, 6)
    assert [(e["type"], e.get("button")) for e in events] == [("pointer_move", -1), ("pointer_up", 0),
                                                              ("pointer_up", 2)]  # fmt: skip
    assert events[-1]["buttons"] == 0
    events = t.pointer(0b1000, 7, 6)  # wheel up press
    assert events == [{"type": "wheel", "x": 7, "y": 6, "dx": 0, "dy": -1, "modifiers": []}]
    assert t.pointer(0, 7, 6) == []  # wheel release is silent
    assert t.pointer(0b10, 7, 6)[0]["button"] == 1  # middle
