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
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _shape(draw: ImageDraw.ImageDraw, art: Art, cx: float, cy: float, r: float) -> None:
    fill = art.accent
    if art.shape == "heart":
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
    _shape(draw, art, w / 2, cy, r * 0.75)
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
