"""Translate X11 keysyms (what RFB KeyEvents carry) into DOM-style ``key`` / ``code`` names.

Users of :class:`pdum.rfb.Display` get the same vocabulary a browser ``KeyboardEvent`` uses, so one
handler serves the notebook widget and desktop VNC viewers. ``key`` is the character or the named
key (``"a"``, ``"A"``, ``"Enter"``, ``"ArrowLeft"``); ``code`` is the physical key on a US layout that
produces it (``"KeyA"``, ``"Enter"``, ``"ArrowLeft"``) -- a best guess, since RFB KeyEvents carry no
scancode (QEMU extended key events do, and then the scancode wins).
"""

from __future__ import annotations

# keysym -> (key, code) for non-printing keys.
_NAMED: dict[int, tuple[str, str]] = {
    0xFF08: ("Backspace", "Backspace"),
    0xFF09: ("Tab", "Tab"),
    0xFE20: ("Tab", "Tab"),  # ISO_Left_Tab (shift+tab)
    0xFF0D: ("Enter", "Enter"),
    0xFF13: ("Pause", "Pause"),
    0xFF14: ("ScrollLock", "ScrollLock"),
    0xFF15: ("SysRq", "PrintScreen"),
    0xFF1B: ("Escape", "Escape"),
    0xFFFF: ("Delete", "Delete"),
    0xFF50: ("Home", "Home"),
    0xFF51: ("ArrowLeft", "ArrowLeft"),
    0xFF52: ("ArrowUp", "ArrowUp"),
    0xFF53: ("ArrowRight", "ArrowRight"),
    0xFF54: ("ArrowDown", "ArrowDown"),
    0xFF55: ("PageUp", "PageUp"),
    0xFF56: ("PageDown", "PageDown"),
    0xFF57: ("End", "End"),
    0xFF61: ("PrintScreen", "PrintScreen"),
    0xFF63: ("Insert", "Insert"),
    0xFF67: ("ContextMenu", "ContextMenu"),
    0xFF7F: ("NumLock", "NumLock"),
    0xFF8D: ("Enter", "NumpadEnter"),
    0xFF95: ("Home", "Numpad7"),
    0xFF96: ("ArrowLeft", "Numpad4"),
    0xFF97: ("ArrowUp", "Numpad8"),
    0xFF98: ("ArrowRight", "Numpad6"),
    0xFF99: ("ArrowDown", "Numpad2"),
    0xFF9A: ("PageUp", "Numpad9"),
    0xFF9B: ("PageDown", "Numpad3"),
    0xFF9C: ("End", "Numpad1"),
    0xFF9D: ("Clear", "Numpad5"),
    0xFF9E: ("Insert", "Numpad0"),
    0xFF9F: ("Delete", "NumpadDecimal"),
    0xFFAA: ("*", "NumpadMultiply"),
    0xFFAB: ("+", "NumpadAdd"),
    0xFFAC: (",", "NumpadComma"),
    0xFFAD: ("-", "NumpadSubtract"),
    0xFFAE: (".", "NumpadDecimal"),
    0xFFAF: ("/", "NumpadDivide"),
    0xFFBD: ("=", "NumpadEqual"),
    0xFFE1: ("Shift", "ShiftLeft"),
    0xFFE2: ("Shift", "ShiftRight"),
    0xFFE3: ("Control", "ControlLeft"),
    0xFFE4: ("Control", "ControlRight"),
    0xFFE5: ("CapsLock", "CapsLock"),
    0xFFE7: ("Meta", "MetaLeft"),
    0xFFE8: ("Meta", "MetaRight"),
    0xFFE9: ("Alt", "AltLeft"),
    0xFFEA: ("Alt", "AltRight"),
    0xFE03: ("AltGraph", "AltRight"),
    0xFFEB: ("Meta", "MetaLeft"),  # Super_L
    0xFFEC: ("Meta", "MetaRight"),  # Super_R
    0xFFED: ("Hyper", "OSLeft"),
    0xFFEE: ("Hyper", "OSRight"),
}
for _i in range(10):
    _NAMED[0xFFB0 + _i] = (str(_i), f"Numpad{_i}")
for _i in range(1, 36):
    _NAMED[0xFFBD + _i] = (f"F{_i}", f"F{_i}")

#: Which modifier a keysym holds down (for the ``modifiers`` list on events).
MODIFIER_KEYSYMS: dict[int, str] = {
    0xFFE1: "Shift",
    0xFFE2: "Shift",
    0xFFE3: "Control",
    0xFFE4: "Control",
    0xFFE9: "Alt",
    0xFFEA: "Alt",
    0xFE03: "AltGraph",
    0xFFE7: "Meta",
    0xFFE8: "Meta",
    0xFFEB: "Meta",
    0xFFEC: "Meta",
}

# US-layout physical keys for printable ASCII.
_PUNCT_CODES: dict[str, str] = {
    " ": "Space",
    "-": "Minus",
    "_": "Minus",
    "=": "Equal",
    "+": "Equal",
    "[": "BracketLeft",
    "{": "BracketLeft",
    "]": "BracketRight",
    "}": "BracketRight",
    "\\": "Backslash",
    "|": "Backslash",
    ";": "Semicolon",
    ":": "Semicolon",
    "'": "Quote",
    '"': "Quote",
    "`": "Backquote",
    "~": "Backquote",
    ",": "Comma",
    "<": "Comma",
    ".": "Period",
    ">": "Period",
    "/": "Slash",
    "?": "Slash",
}
_SHIFTED_DIGITS = ")!@#$%^&*("


def _code_for_char(ch: str) -> str:
    if "a" <= ch <= "z" or "A" <= ch <= "Z":
        return "Key" + ch.upper()
    if "0" <= ch <= "9":
        return "Digit" + ch
    if ch in _SHIFTED_DIGITS:
        return "Digit" + str(_SHIFTED_DIGITS.index(ch))
    return _PUNCT_CODES.get(ch, "")


def keysym_to_key(keysym: int) -> tuple[str, str]:
    """Return ``(key, code)`` for an X11 keysym; unknown keysyms give ``("Unidentified", "")``."""
    named = _NAMED.get(keysym)
    if named is not None:
        return named
    char: str | None = None
    if 0x20 <= keysym <= 0x7E or 0xA0 <= keysym <= 0xFF:
        char = chr(keysym)
    elif 0x01000100 <= keysym <= 0x0110FFFF:
        char = chr(keysym - 0x01000000)
    if char is not None:
        return char, _code_for_char(char)
    return "Unidentified", ""


# QEMU extended key events carry an XT scancode; these are the common ones (set 1, 0xE0 -> 0x80 bit).
_XT_CODES: dict[int, str] = {
    0x01: "Escape", 0x0E: "Backspace", 0x0F: "Tab", 0x1C: "Enter", 0x1D: "ControlLeft",
    0x2A: "ShiftLeft", 0x36: "ShiftRight", 0x38: "AltLeft", 0x39: "Space", 0x3A: "CapsLock",
    0x0C: "Minus", 0x0D: "Equal", 0x1A: "BracketLeft", 0x1B: "BracketRight", 0x27: "Semicolon",
    0x28: "Quote", 0x29: "Backquote", 0x2B: "Backslash", 0x33: "Comma", 0x34: "Period", 0x35: "Slash",
    0x9D: "ControlRight", 0xB8: "AltRight", 0xC7: "Home", 0xC8: "ArrowUp", 0xC9: "PageUp",
    0xCB: "ArrowLeft", 0xCD: "ArrowRight", 0xCF: "End", 0xD0: "ArrowDown", 0xD1: "PageDown",
    0xD2: "Insert", 0xD3: "Delete", 0xDB: "MetaLeft", 0xDC: "MetaRight", 0xDD: "ContextMenu",
    0x9C: "NumpadEnter",
}  # fmt: skip
for _row, _letters in ((0x10, "QWERTYUIOP"), (0x1E, "ASDFGHJKL"), (0x2C, "ZXCVBNM")):
    for _i, _ch in enumerate(_letters):
        _XT_CODES[_row + _i] = "Key" + _ch
for _i, _d in enumerate("1234567890"):
    _XT_CODES[0x02 + _i] = "Digit" + _d
for _i in range(10):
    _XT_CODES[0x3B + _i] = f"F{_i + 1}"
_XT_CODES[0x57] = "F11"
_XT_CODES[0x58] = "F12"


def scancode_to_code(keycode: int) -> str:
    """DOM ``code`` for a QEMU (XT set 1, 0xE0-prefixed keys with bit 7 set) scancode, or ``""``."""
    return _XT_CODES.get(keycode, "")
