"""Draw the packaged reaction GIFs (and their WebM variants) with Pillow and PyAV.

Run once when the artwork changes; its output under reactions/media/ is committed, so
nothing is drawn or downloaded at run time:

    python -m reactions.make_media
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from reactions.catalog import MEDIA_DIR

SIZE = (160, 120)
FRAMES = 12
FRAME_MS = 90


@dataclass(frozen=True)
class Art:
    name: str
    text: str
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]
    shape: str  # drawn in the middle of the badge


ART = (
    Art("thumbs_up", "THUMBS UP", (46, 160, 67), (255, 214, 10), "thumb"),
    Art("thumbs_down", "NOPE", (200, 60, 60), (255, 180, 180), "thumb_down"),
    Art("wave", "HELLO!", (30, 136, 229), (255, 224, 130), "hand"),
    Art("ok_hand", "OK!", (142, 68, 173), (255, 214, 10), "ring"),
    Art("peace", "PEACE", (0, 150, 136), (255, 255, 255), "v"),
    Art("rock_on", "ROCK ON", (33, 33, 33), (255, 87, 34), "bolt"),
    Art("call_me", "CALL ME", (255, 112, 67), (255, 255, 255), "phone"),
    Art("heart", "LOVE IT", (233, 30, 99), (255, 205, 210), "heart"),
    Art("smile", "SMILE!", (255, 160, 0), (255, 236, 179), "smiley"),
    Art("thinking", "HMMM...", (121, 85, 72), (255, 224, 178), "thinking"),
    # Two-handed, as FaceTime has them: two thumbs up, two thumbs down, two peace signs.
    Art("fireworks", "WOOHOO!", (40, 53, 147), (255, 214, 10), "fireworks"),
    Art("rain", "OH NO", (84, 110, 122), (179, 229, 252), "rain"),
    Art("confetti", "YAY!", (216, 27, 96), (255, 241, 118), "confetti"),
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _shape(
    draw: ImageDraw.ImageDraw, art: Art, cx: float, cy: float, r: float, phase: float = 0.0
) -> None:
    fill = art.accent
    if art.shape in _ANIMATED:
        _ANIMATED[art.shape](draw, art, cx, cy, r, phase)
    elif art.shape == "heart":
        pts = [
            (
                cx + r * 16 * math.sin(t) ** 3 / 17,
                cy
                - r
                * (13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
                / 17,
            )
            for t in (i * 2 * math.pi / 48 for i in range(48))
        ]
        draw.polygon(pts, fill=fill)
    elif art.shape in ("thumb", "thumb_down"):
        # A fist to the right with the thumb up (or down) at its left edge; finger
        # creases make it read as a fist at this size.
        up = art.shape == "thumb"
        top, bottom = (cy - r * 0.15, cy + r * 0.8) if up else (cy - r * 0.8, cy + r * 0.15)
        draw.rounded_rectangle(
            (cx - r * 0.55, top, cx + r * 0.65, bottom), radius=r * 0.25, fill=fill
        )
        thumb = (
            (cx - r * 0.55, cy - r * 0.95, cx - r * 0.15, top + r * 0.3)
            if up
            else (cx - r * 0.55, bottom - r * 0.3, cx - r * 0.15, cy + r * 0.95)
        )
        draw.rounded_rectangle(thumb, radius=r * 0.2, fill=fill)
        for j in (1, 2, 3):
            y = top + (bottom - top) * j / 4
            draw.line((cx + r * 0.05, y, cx + r * 0.65, y), fill=art.colour, width=2)
    elif art.shape == "hand":
        draw.rounded_rectangle(
            (cx - r * 0.55, cy - r * 0.1, cx + r * 0.55, cy + r * 0.8), radius=r * 0.3, fill=fill
        )
        for i in range(4):
            x = cx - r * 0.5 + i * r * 0.33
            draw.rounded_rectangle(
                (x, cy - r * 0.85 + abs(i - 1.5) * r * 0.15, x + r * 0.24, cy + r * 0.1),
                radius=r * 0.12,
                fill=fill,
            )
    elif art.shape == "ring":
        draw.ellipse(
            (cx - r * 0.6, cy - r * 0.6, cx + r * 0.6, cy + r * 0.6),
            outline=fill,
            width=max(3, int(r * 0.25)),
        )
    elif art.shape == "v":
        draw.line(
            (cx - r * 0.6, cy - r * 0.8, cx, cy + r * 0.7, cx + r * 0.6, cy - r * 0.8),
            fill=fill,
            width=max(3, int(r * 0.3)),
            joint="curve",
        )
    elif art.shape == "bolt":
        draw.polygon(
            [
                (cx + r * 0.2, cy - r),
                (cx - r * 0.5, cy + r * 0.1),
                (cx, cy + r * 0.1),
                (cx - r * 0.2, cy + r),
                (cx + r * 0.5, cy - r * 0.1),
                (cx, cy - r * 0.1),
            ],
            fill=fill,
        )
    else:  # phone
        draw.rounded_rectangle(
            (cx - r * 0.35, cy - r * 0.8, cx + r * 0.35, cy + r * 0.8),
            radius=r * 0.15,
            outline=fill,
            width=max(3, int(r * 0.15)),
        )


def _face(draw: ImageDraw.ImageDraw, art: Art, cx: float, cy: float, r: float) -> None:
    draw.ellipse((cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8), fill=art.accent)
    for side in (-1, 1):
        ex = cx + side * r * 0.3
        draw.ellipse((ex - r * 0.1, cy - r * 0.35, ex + r * 0.1, cy - r * 0.1), fill=art.colour)


def _smiley(
    draw: ImageDraw.ImageDraw, art: Art, cx: float, cy: float, r: float, phase: float
) -> None:
    _face(draw, art, cx, cy, r)
    # The smile widens and relaxes as the badge pulses.
    grin = r * (0.45 + 0.08 * math.sin(phase * 2 * math.pi))
    draw.arc(
        (cx - grin, cy - grin * 0.7, cx + grin, cy + grin * 0.9),
        start=20,
        end=160,
        fill=art.colour,
        width=max(2, int(r * 0.12)),
    )


def _thinking(
    draw: ImageDraw.ImageDraw, art: Art, cx: float, cy: float, r: float, phase: float
) -> None:
    _face(draw, art, cx, cy, r)
    width = max(2, int(r * 0.1))
    # One eyebrow raised, a flat mouth, and a hand at the chin that taps.
    draw.line(
        (cx + r * 0.15, cy - r * 0.55, cx + r * 0.45, cy - r * 0.65), fill=art.colour, width=width
    )
    draw.line(
        (cx - r * 0.3, cy + r * 0.3, cx + r * 0.2, cy + r * 0.25), fill=art.colour, width=width
    )
    # A fist under the chin, off to one side, the index finger up the cheek; it taps.
    tap = r * 0.05 * math.sin(phase * 4 * math.pi)
    hx, hy = cx + r * 0.45, cy + r * 0.62 + tap
    hand = (240, 170, 100)  # darker than the face, so the hand reads in front of it
    draw.line(
        (hx + r * 0.1, hy + r * 0.05, hx + r * 0.28, hy - r * 0.55),
        fill=hand,
        width=max(3, int(r * 0.18)),
    )
    draw.rounded_rectangle(
        (hx - r * 0.32, hy, hx + r * 0.22, hy + r * 0.36),
        radius=r * 0.12,
        fill=hand,
        outline=art.colour,
    )


def _fireworks(
    draw: ImageDraw.ImageDraw, art: Art, cx: float, cy: float, r: float, phase: float
) -> None:
    # Two bursts, half a cycle apart, each growing and fading into dots.
    for k, (dx, dy, colour) in enumerate(((-0.35, -0.2, art.accent), (0.4, 0.25, (255, 255, 255)))):
        grow = (phase + k / 2) % 1.0
        bx, by = cx + dx * r, cy + dy * r
        for ray in range(10):
            angle = ray * 2 * math.pi / 10
            inner, outer = r * 0.9 * grow * 0.4, r * 0.9 * grow
            x0, y0 = bx + inner * math.cos(angle), by + inner * math.sin(angle)
            x1, y1 = bx + outer * math.cos(angle), by + outer * math.sin(angle)
            if grow < 0.7:
                draw.line((x0, y0, x1, y1), fill=colour, width=2)
            else:
                draw.ellipse((x1 - 2, y1 - 2, x1 + 2, y1 + 2), fill=colour)


def _rain(
    draw: ImageDraw.ImageDraw, art: Art, cx: float, cy: float, r: float, phase: float
) -> None:
    cloud = (200, 210, 215)
    for ox, oy, s in ((-0.4, -0.35, 0.4), (0.0, -0.55, 0.5), (0.4, -0.35, 0.4)):
        draw.ellipse(
            (cx + (ox - s) * r, cy + (oy - s) * r, cx + (ox + s) * r, cy + (oy + s) * r), fill=cloud
        )
    draw.rectangle((cx - 0.8 * r, cy - 0.4 * r, cx + 0.8 * r, cy - 0.05 * r), fill=cloud)
    for drop in range(6):
        x = cx + (drop - 2.5) * r * 0.28
        y = cy + ((phase + drop * 0.37) % 1.0) * r * 0.9
        draw.line((x, y, x - r * 0.06, y + r * 0.2), fill=art.accent, width=2)


def _confetti(
    draw: ImageDraw.ImageDraw, art: Art, cx: float, cy: float, r: float, phase: float
) -> None:
    colours = (art.accent, (255, 255, 255), (129, 212, 250), (165, 214, 167))
    for piece in range(14):
        x = cx + ((piece * 0.618) % 1.0 - 0.5) * 1.6 * r
        y = cy - r + ((phase + piece * 0.29) % 1.0) * 2 * r
        tilt = r * 0.12 * math.sin((phase + piece / 7) * 2 * math.pi)
        draw.polygon(
            [(x - 3, y - tilt), (x + 3, y + tilt), (x + 3, y + 4 + tilt), (x - 3, y + 4 - tilt)],
            fill=colours[piece % len(colours)],
        )


_ANIMATED = {
    "smiley": _smiley,
    "thinking": _thinking,
    "fireworks": _fireworks,
    "rain": _rain,
    "confetti": _confetti,
}


def _frame(art: Art, style: int, i: int, rng: random.Random) -> Image.Image:
    w, h = SIZE
    phase = i / FRAMES
    image = Image.new("RGB", SIZE, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    # A soft background in the reaction's colour, with confetti falling through it.
    light = tuple(int(c + (255 - c) * 0.8) for c in art.colour)
    draw.rectangle((0, 0, w, h), fill=light)
    for _ in range(6):
        x = rng.uniform(0, w)
        y = (rng.uniform(0, h) + phase * h) % h
        colour = rng.choice([art.colour, art.accent, (255, 255, 255)])
        draw.rectangle((x, y, x + 5, y + 3), fill=colour)
    if style == 0:
        # A badge that pulses, with rings bursting out of it.
        for ring in range(2):
            rr = ((phase + ring / 2) % 1.0) * 70
            draw.ellipse((w / 2 - rr, 46 - rr, w / 2 + rr, 46 + rr), outline=art.accent, width=3)
        r = 28 + 4 * math.sin(phase * 2 * math.pi)
        cy = 46.0
    else:
        # A badge that bounces.
        r = 28.0
        cy = 50 - abs(math.sin(phase * math.pi)) * 16
    draw.ellipse((w / 2 - r, cy - r, w / 2 + r, cy + r), fill=art.colour)
    _shape(draw, art, w / 2, cy, r * 0.75, phase)
    font = _font(18)
    box = draw.textbbox((0, 0), art.text, font=font)
    tx = (w - (box[2] - box[0])) / 2
    draw.text((tx + 2, 95), art.text, font=font, fill=(0, 0, 0))
    draw.text((tx, 93), art.text, font=font, fill=art.colour)
    return image


def draw_gif(art: Art, style: int) -> bytes:
    frames = [
        _frame(art, style, i, random.Random(f"{art.name}{style}{i % FRAMES}"))
        for i in range(FRAMES)
    ]
    # A small shared palette keeps each GIF at a few KB.
    palette = frames[0].quantize(colors=16, method=Image.Quantize.MEDIANCUT)
    quantized = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    out = io.BytesIO()
    quantized[0].save(
        out,
        format="GIF",
        save_all=True,
        append_images=quantized[1:],
        duration=FRAME_MS,
        loop=0,
        optimize=True,
    )
    return out.getvalue()


def draw_webm(art: Art) -> bytes:
    import av

    out = io.BytesIO()
    with av.open(out, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=Fraction(1000, FRAME_MS))
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 40_000
        for i in range(FRAMES):
            image = _frame(art, 0, i % FRAMES, random.Random(f"{art.name}0{i % FRAMES}"))
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def main(target: Path = MEDIA_DIR) -> None:
    (target / "gifs").mkdir(parents=True, exist_ok=True)
    (target / "videos").mkdir(parents=True, exist_ok=True)
    for art in ART:
        for style in (0, 1):
            path = target / "gifs" / f"{art.name}_{style + 1}.gif"
            path.write_bytes(draw_gif(art, style))
            print(f"{path.relative_to(target.parent)}: {path.stat().st_size} bytes")
        path = target / "videos" / f"{art.name}.webm"
        path.write_bytes(draw_webm(art))
        print(f"{path.relative_to(target.parent)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
