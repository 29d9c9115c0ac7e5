"""Generate the synthetic demo scene shipped with RSEdit for ComfyUI.

The image is a *procedurally generated* top-down view of a small coastal town
(sea, beach, promenade, pier, road grid, buildings with shadows, trees, fields)
at a nominal ~0.5 m/px, drawn with numpy and Pillow from a fixed seed so it is
fully reproducible. It is NOT real imagery: the repository ships no third-party
satellite or aerial data.

It also writes the two companion inputs of the example workflows:

- ``--masked OUT.png``: the scene as RGBA with alpha 0 over the waterfront around the pier, which ComfyUI's
  Load Image turns into a MASK of 1 there (a region "painted" in its mask editor);
- ``--damage-target OUT.png``: a synthetic xView2-style class map (0 background, 1 no-damage,
  2 minor, 3 major, 4 destroyed) of this scene's own building footprints, graded by distance from
  the shore. It is the damage the flood instruction asks for, drawn by this script: a stand-in
  ground truth that shows how the assessment node scores an edit, not a survey of anything.

Usage: python scripts/make_sample_scene.py OUT.png [--size 512] [--seed 0]
           [--masked MASKED.png] [--damage-target TARGET.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]
# terracotta tiles, slate / concrete grey, white / cream flat roofs
ROOFS: list[RGB] = [(176, 84, 60), (158, 72, 52), (190, 102, 70), (184, 92, 66),
                    (124, 124, 126), (98, 100, 104), (226, 224, 218),
                    (206, 200, 188)]  # fmt: skip


def fbm(rng: np.random.Generator, n: int, octaves: int = 5, base: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1] from bicubically upsampled random grids."""
    out, amp, total = np.zeros((n, n), np.float32), 1.0, 0.0
    for o in range(octaves):
        grid = Image.fromarray(rng.random((base * 2**o,) * 2).astype(np.float32), "F")
        out += amp * np.asarray(grid.resize((n, n), Image.Resampling.BICUBIC))
        total, amp = total + amp, amp * 0.5
    out /= total
    return (out - out.min()) / (np.ptp(out) + 1e-6)


def blend(img: np.ndarray, mask: np.ndarray, color: RGB | np.ndarray) -> np.ndarray:
    """Alpha-blend ``color`` (RGB or HxWx3) into ``img`` with a 0..1 HxW ``mask``."""
    m = mask[..., None]
    return img * (1 - m) + np.asarray(color, np.float32) * m


def blank(n: int) -> Image.Image:
    """An empty n x n single-channel drawing layer."""
    return Image.new("L", (n, n))


def as_mask(layer: Image.Image, blur: float = 0.0) -> np.ndarray:
    """Convert an ``L`` layer to a float mask in 0..1, optionally blurred."""
    if blur > 0:
        layer = layer.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(layer, np.float32) / 255.0


def shade(c: RGB, k: float) -> RGB:
    """Scale a colour's brightness by ``k``."""
    r, g, b = (int(min(255, v * k)) for v in c)
    return r, g, b


def make_scene(size: int = 512, seed: int = 0) -> Image.Image:
    """Return a deterministic synthetic aerial view of a small coastal town."""
    return render(size, seed)[0]


# Inland distance bands (px at 512) of the demo damage target: destroyed, major, minor.
DAMAGE_BANDS = ((4, 70), (3, 140), (2, 210))
# The "painted" waterfront around the pier of the masked input: (x0, y0, x1, y1) at 512 px.
PAINTED_BOX = (250, 200, 512, 400)


def render(size: int = 512, seed: int = 0) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """The scene, a boolean building-footprint mask and the signed distance to the sea (>0: sea)."""
    rng = np.random.default_rng(seed)
    n, s = size, size / 512.0  # all lengths below are designed for 512 px
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    n1, n2, n3 = fbm(rng, n), fbm(rng, n, base=8), fbm(rng, n, base=2)

    # --- land cover: grass, dry grass, lush areas and bare soil ------------
    img = blend(np.full((n, n, 3), (104, 122, 72), np.float32), n1, (146, 140, 94))
    img = blend(img, np.clip((n3 - 0.6) * 2.5, 0, 1), (78, 102, 58))
    img = blend(img, np.clip((n2 - 0.55) * 3, 0, 0.8), (160, 132, 98))

    # --- coastline: sea to the east, sandy beach, wet sand, surf -----------
    coarse = xx + 0.3 * yy - 0.93 * n + (fbm(rng, n, 2, 3) - 0.5) * 80 * s
    dist = coarse + (fbm(rng, n, 3, 12) - 0.5) * 24 * s  # ~signed distance, >0: sea
    beach, rw = 26 * s, max(2, round(9 * s))
    img = blend(img, np.clip((coarse + beach) / (3 * s) + 0.3, 0, 1), (212, 198, 158))
    img = blend(img, np.clip((dist + 6 * s) / (12 * s), 0, 0.5), (184, 168, 128))
    depth = np.clip(dist / (110 * s), 0, 1) ** 0.7
    water = blend(np.full_like(img, (64, 150, 150)), depth, (20, 58, 92))
    ripples = 0.5 + 0.5 * np.sin((yy - 0.3 * xx) / (3 * s) + 6 * fbm(rng, n, 3, 16))
    water = blend(water, ripples * 0.12 * depth, (70, 120, 150))
    img = blend(img, np.clip(dist / (2 * s), 0, 1), water)
    for d0, a in ((3, 0.8), (14, 0.35)):  # breaking waves / foam lines
        foam = np.clip(1 - np.abs(dist - d0 * s) / (2.5 * s), 0, 1) * (0.3 + 0.7 * n2)
        img = blend(img, foam * a, (226, 234, 230))
    land = coarse < -beach - rw  # the town is built inland of the promenade

    # --- agricultural fields in the south-west with crop rows --------------
    fmask = blank(n)
    for box, col, diag in [((0, 322, 90, 415), (122, 146, 68), 0),
                           ((0, 422, 90, 512), (172, 146, 100), 1),
                           ((98, 432, 190, 512), (140, 158, 84), 1)]:  # fmt: skip
        f = blank(n)
        ImageDraw.Draw(f).rectangle([v * s for v in box], fill=255)
        ImageDraw.Draw(fmask).rectangle([v * s for v in box], fill=255)
        rows = 0.5 + 0.5 * np.sin((xx + diag * yy) * 1.4 / max(s, 0.3))
        tint = np.float32(col) * (0.88 + 0.16 * rows + 0.1 * (n1 - 0.5))[..., None]
        img = blend(img, as_mask(f, 0.5) * 0.92, tint)
    field = np.asarray(fmask) > 0

    # --- road network: jittered grid ending at a coastal promenade --------
    xs = [round((v + rng.integers(-8, 9)) * s) for v in (104, 196, 288, 380)]
    ys = [round((v + rng.integers(-8, 9)) * s) for v in (40, 128, 216, 312, 416)]
    segs = [((x, 0), (x - 8 * s, n)) for x in xs]
    segs += [((0, y), (n, y + 5 * s)) for y in ys[:-1]]
    segs += [((0, ys[-1]), (xs[1], ys[-1]))]

    def roads(width: int, blur: float) -> np.ndarray:
        lay = blank(n)
        for a, b in segs:
            ImageDraw.Draw(lay).line([a, b], fill=255, width=width)
        return as_mask(lay, blur) * np.clip((-coarse - beach) / s, 0, 1)

    prom = np.abs(coarse + beach + rw / 2)  # distance to the promenade centre line
    walk = np.maximum(roads(rw + round(4 * s), 0.5), np.clip(rw / 2 - prom, 0, 1))
    road = np.maximum(roads(rw, 0.6), np.clip(rw / 2 - 2 * s - prom, 0, 1))
    img = blend(img, walk, (168, 164, 152))  # pavements
    img = blend(img, road, np.float32([86, 88, 90]) + 16 * (n2[..., None] - 0.5))
    dash = ((xx + yy) // max(1, round(7 * s)) % 2).astype(np.float32)
    centre = np.maximum(roads(max(1, round(s)), 0), np.clip(0.8 * s - prom, 0, 1))
    img = blend(img, centre * dash * road * min(0.85, s), (222, 218, 200))

    # --- buildings on lots along each block front, parks and yard trees ---
    roofs, roof_m, shadow, built = Image.new("RGB", (n, n)), blank(n), blank(n), blank(n)
    rd, md, sd = ImageDraw.Draw(roofs), ImageDraw.Draw(roof_m), ImageDraw.Draw(shadow)
    bd = ImageDraw.Draw(built)
    trees: list[tuple[float, float, float]] = []
    gx, gy, pad = [-rw, *xs, n + rw], [-rw, *ys, n + rw], rw / 2 + 3 * s
    for i in range(len(gx) - 1):
        for j in range(len(gy) - 1):
            x0, x1 = gx[i] + pad, gx[i + 1] - pad - 8 * s
            y0, y1 = gy[j] + pad + 5 * s, gy[j + 1] - pad
            if rng.random() < 0.13:  # park: lawn with clustered trees
                for _ in range(int(45 * s * s) + 2):
                    r = rng.uniform(3, 7) * s
                    trees.append((rng.uniform(x0, x1), rng.uniform(y0, y1), r))
                continue
            depth = (y1 - y0) / 2
            for top in (True, False):
                x = x0 + rng.uniform(0, 6) * s
                while x < x1:
                    lot = rng.uniform(15, 26) * s * (2.2 if rng.random() < 0.08 else 1)
                    w = min(lot - rng.uniform(3, 6) * s, x1 - x)
                    h, gap = depth * rng.uniform(0.45, 0.8), rng.uniform(1, 5) * s
                    bx, by, x = x, (y0 + gap if top else y1 - h - gap), x + lot
                    ok = [0 <= px < n and 0 <= py < n and land[int(py), int(px)]
                          and not field[int(py), int(px)]
                          for px in (bx, bx + w) for py in (by, by + h)]  # fmt: skip
                    if min(w, h) < 8 * s or not all(ok):
                        continue
                    yard = by + h + depth * 0.25 if top else by - depth * 0.25
                    if rng.random() < 0.15:  # empty lot / garden
                        trees.append((bx + w / 2, by + h / 2, rng.uniform(3, 6) * s))
                        continue
                    off, box = rng.uniform(3, 5) * s, (bx, by, bx + w, by + h)
                    sd.rectangle([v + off for v in box], fill=255)
                    c = shade(ROOFS[rng.integers(len(ROOFS))], rng.uniform(0.9, 1.08))
                    rd.rectangle(box, fill=c, outline=shade(c, 0.8))
                    md.rectangle(box, fill=255)
                    bd.rectangle(box, fill=255)
                    if c[0] > c[2] + 40 and w * h > 200 * s * s:  # gabled tile roof
                        half = (bx, by + h / 2) if w > h else (bx + w / 2, by)
                        rd.rectangle((*half, bx + w, by + h), fill=shade(c, 0.8))
                    elif rng.random() < 0.3:  # rooftop plant on a flat roof
                        box = (bx + w * 0.3, by + h * 0.3, bx + w * 0.5, by + h * 0.5)
                        rd.rectangle(box, fill=(150, 150, 150))
                    u, r = rng.random(), rng.uniform(3, 6) * s
                    if u < 0.12 and w > 12 * s:  # swimming pool in the back yard
                        box = (bx + 0.2 * w, yard - 5 * s, bx + 0.55 * w, yard + 5 * s)
                        rd.rectangle(box, fill=(70, 180, 200), outline=(225, 225, 215))
                        md.rectangle(box, fill=255)
                    elif u < 0.5:  # back-yard tree
                        trees.append((bx + rng.uniform(0, w), yard, r))

    # --- a wooden pier with moored boats, and a few boats offshore --------
    py = int(0.6 * n)
    px0, px1 = float(np.argmax(dist[py] > -beach)), float(np.argmax(dist[py] > 70 * s))
    pier = (px0, py - 3 * s, px1 or n, py + 3 * s)
    rd.rectangle(pier, fill=(146, 120, 90))
    md.rectangle(pier, fill=255)
    sd.rectangle([v + 3 * s for v in pier], fill=255)
    boats = [(px1 - k * 16 * s, py + (-1) ** k * 9 * s) for k in range(4)]
    for bx, by in rng.uniform(0, n - 1, (3, 2)):
        if dist[int(by), int(bx)] > 60 * s:
            boats.append((bx, by))
    outline = [(-7, -2.5), (4, -2.5), (8, 0), (4, 2.5), (-7, 2.5)]
    for bx, by in boats:
        hull = [(bx + u * s, by + v * s) for u, v in outline]
        sd.polygon([(u + 2 * s, v + 2 * s) for u, v in hull], fill=200)
        rd.polygon(hull, fill=(236, 236, 232))
        rd.rectangle((bx - 4 * s, by - s, bx + s, by + s), fill=(120, 140, 160))
        md.polygon(hull, fill=255)
    for _ in range(int(220 * s * s) + 4):  # scattered countryside / street trees
        trees.append((rng.uniform(0, n), rng.uniform(0, n), rng.uniform(2.5, 6) * s))

    # --- compose: shadows, roofs, tree crowns with a sunlit side -----------
    roof_px, crowns, light = np.asarray(roof_m), blank(n), blank(n)
    cd, ld = ImageDraw.Draw(crowns), ImageDraw.Draw(light)
    for tx, ty, r in trees:
        ix, iy = int(np.clip(tx, 0, n - 1)), int(np.clip(ty, 0, n - 1))
        if not land[iy, ix] or road[iy, ix] > 0.1 or roof_px[iy, ix] or field[iy, ix]:
            continue
        sd.ellipse([v + 2.5 * s for v in (tx - r, ty - r, tx + r, ty + r)], 200)
        cd.ellipse((tx - r, ty - r, tx + r, ty + r), fill=255)
        ld.ellipse((tx - 0.8 * r, ty - 0.8 * r, tx + 0.3 * r, ty + 0.3 * r), fill=255)
    img *= 1 - 0.5 * as_mask(shadow, 1.0 * s + 0.3)[..., None]
    grain = 0.96 + 0.08 * rng.random((n, n, 1)).astype(np.float32)
    img = blend(img, as_mask(roof_m, 0.4), np.asarray(roofs, np.float32) * grain)
    tex = fbm(rng, n, 2, max(4, n // 8))[..., None]
    leaf = np.float32([40, 72, 36]) * (0.7 + 0.6 * tex)
    lit = as_mask(light, 1.5 * s + 0.3)[..., None]
    img = blend(img, as_mask(crowns, 0.9 * s + 0.2), leaf * (0.85 + 0.45 * lit))

    # --- sensor-like finish: grain noise and slight softening --------------
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return out.filter(ImageFilter.GaussianBlur(0.35 * min(s, 1) + 0.05)), np.asarray(built) > 0, dist


def damage_target(size: int = 512, seed: int = 0) -> Image.Image:
    """The demo class map: buildings graded by distance inland from the sea, 0 elsewhere."""
    _, buildings, dist = render(size, seed)
    inland = -dist * 512.0 / size
    classes = np.where(buildings, 1, 0).astype(np.uint8)
    for value, reach in DAMAGE_BANDS[::-1]:
        classes[buildings & (inland < reach)] = value
    return Image.fromarray(classes, "L")


def masked_scene(size: int = 512, seed: int = 0) -> Image.Image:
    """The scene as RGBA, transparent (alpha 0) over the painted waterfront around the pier."""
    rgba = make_scene(size, seed).convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    ImageDraw.Draw(alpha).rectangle([round(v * size / 512) for v in PAINTED_BOX], fill=0)
    rgba.putalpha(alpha)
    return rgba


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output PNG path")
    parser.add_argument("--size", type=int, default=512, help="square side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--masked", type=Path, help="also write the RGBA input with the painted waterfront around the pier"
    )
    parser.add_argument("--damage-target", type=Path, help="also write the synthetic 0-4 damage class map")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    make_scene(args.size, args.seed).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.size}x{args.size}, seed={args.seed})")
    if args.masked:
        masked_scene(args.size, args.seed).save(args.masked, optimize=True)
        print(f"wrote {args.masked}")
    if args.damage_target:
        damage_target(args.size, args.seed).save(args.damage_target, optimize=True)
        print(f"wrote {args.damage_target}")


if __name__ == "__main__":
    main()
