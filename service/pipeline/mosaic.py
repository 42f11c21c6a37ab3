"""Pack an image pyramid's levels into one canvas, so that PNet runs once per photo, not once per level.

PNet is fully convolutional: each output cell sees one 12-pixel window at stride 2. A level placed at
even offsets in a larger canvas therefore gets, for its own windows, the outputs it would get alone
(``mtcnn_nets`` takes care of the one exception, the odd edge), and the windows that straddle two
levels or the empty space are simply not read. One call instead of a dozen saves the runtime's
per-call and per-shape work, and canvases come in few sizes (``STEP``), whereas levels come in many.
"""

from __future__ import annotations

from dataclasses import dataclass

STEP = 32  # canvas sides are multiples of this: a few shapes, each prepared once by the runtime


@dataclass(frozen=True)
class Layout:
    places: list[tuple[int, int]]  # (top, left) of each level, both even
    height: int
    width: int


def pack(sizes: list[tuple[int, int]]) -> Layout:
    """Place levels of (height, width), largest first as a pyramid lists them, into a small canvas.

    Bottom-left skyline packing, tried for four canvas widths (the largest level alone, then with
    the next one, two or three beside it), and the same with rows and columns swapped; the smallest
    canvas wins.
    """
    even = [(h + h % 2, w + w % 2) for h, w in sizes]
    best = None
    for swapped in (False, True):
        rects = [(w, h) for h, w in even] if swapped else even
        for beside in range(min(4, len(rects))):
            width = sum(w for _, w in rects[: beside + 1])
            places, height = _skyline(rects, width)
            layout = Layout(places, _up(height), _up(width))
            if swapped:
                layout = Layout([(left, top) for top, left in places], layout.width, layout.height)
            if best is None or layout.height * layout.width < best.height * best.width:
                best = layout
    return best


def _skyline(sizes: list[tuple[int, int]], width: int) -> tuple[list[tuple[int, int]], int]:
    """Bottom-left placement: each level where its top edge ends lowest, then leftmost."""
    skyline = [(0, width, 0)]  # segments (left, width, height of what is stacked there)
    places = []
    for h, w in sizes:
        best = None
        for i, (left, _, _) in enumerate(skyline):
            if left + w > width:
                break
            top = _resting_height(skyline, i, w)
            if best is None or (top + h, left) < (best[0] + h, best[1]):
                best = (top, left)
        top, left = best
        places.append((top, left))
        skyline = _raised(skyline, left, w, top + h)
    return places, max(top + h for (top, _), (h, _) in zip(places, sizes))


def _resting_height(skyline, start: int, w: int) -> int:
    left = skyline[start][0]
    return max(y for x, sw, y in skyline[start:] if x < left + w)


def _raised(skyline, left: int, w: int, y: int):
    """The skyline with [left, left + w) raised to y."""
    out = []
    for x, sw, sy in skyline:
        if x + sw <= left or x >= left + w:
            out.append((x, sw, sy))
            continue
        if x < left:
            out.append((x, left - x, sy))
        if x + sw > left + w:
            out.append((left + w, x + sw - left - w, sy))
    out.append((left, w, y))
    out.sort()
    merged = [out[0]]
    for x, sw, sy in out[1:]:
        px, psw, psy = merged[-1]
        if psy == sy and px + psw == x:
            merged[-1] = (px, psw + sw, sy)
        else:
            merged.append((x, sw, sy))
    return merged


def _up(n: int) -> int:
    return -(-n // STEP) * STEP
