"""Write the UI-format example workflows in ``example_workflows/`` and their thumbnails.

Every graph is described below in a few lines (nodes, widget values, links) and laid out in
columns; the JSON is what ComfyUI's frontend saves (workflow schema 0.4), so it loads from
Templates -> Custom Nodes -> this pack. The instructions are ours, in the paper's style: what
changes, how many buildings per damage level, and what stays.

Thumbnails show each graph's *input* image (the synthetic sample scene, with the painted region
outlined where the graph uses it) beside a schematic of the graph itself. They never show an
edit: no result image here was produced by the released weights, so none is shown.

    python scripts/make_workflows.py            # rewrite example_workflows/
    python scripts/make_workflows.py --check    # exit 1 if the files differ from what this writes
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from rsedit_core import __version__ as VERSION  # noqa: E402
from rsedit_core import backbones, defaults  # noqa: E402
from rsedit_core.instructions import SEVERITIES  # noqa: E402

OUT = ROOT / "example_workflows"

UNET = "RSEdit-UNet-text-ablation/DGTRS-CLIP-ViT-L-14"
DIT = "RSEdit-DiT"
# The editor each models/rsedit folder holds, for its defaults and its hub location.
BACKBONE_OF = {UNET: backbones.UNET, DIT: backbones.DIT}
UNET_CFG = backbones.UNET.default_text_cfg
CHANGESTAR = "changestar1x256_vitb_xview2.safetensors"


def _weights_entry(folder: str, repo: str, subfolder: str, component: str) -> dict:
    """ComfyUI's model metadata for an editor folder: its denoiser's weight file. The frontend
    lists model *files* (a folder name never matches) and downloads single ``.safetensors`` from a
    ``/resolve/`` URL, so this names the one file that tells whether the editor is installed; the
    rest of the folder is fetched as the README's Models section shows."""
    relative = f"{component}/diffusion_pytorch_model.safetensors"
    prefix = f"{subfolder}/" if subfolder else ""
    return {
        "name": f"{folder}/{relative}",
        "url": f"https://huggingface.co/{repo}/resolve/main/{prefix}{relative}",
        "directory": "rsedit",
    }


# The damage checkpoint has no entry: upstream names its file only in the repo's config.json and
# users convert it (README), so there is no file URL that would land under this name.
MODELS = {
    name: _weights_entry(name, b.release_repo, b.release_subfolder or "", b.component_folder)
    for name, b in BACKBONE_OF.items()
}
SCENE = "rsedit_sample_scene.png"
MASKED_SCENE = "rsedit_sample_scene_masked.png"
DAMAGE_TARGET = "rsedit_sample_damage_target.png"
GEOTIFF = "rsedit_sample_scene.tif"
# The sample GeoTIFF holds scaled reflectance (x 10000): this fixed range shows the drawing's own colours.
GEOTIFF_STRETCH = "0,3000"

# Output slots of the nodes used: node type -> [(name, type)].
OUTPUTS = {
    "RSEditLoader": [("rsedit_model", "RSEDIT_MODEL")],
    "RSEditTextEncode": [("conditioning", "RSEDIT_TEXT")],
    "RSEditSourceConditioning": [("source", "RSEDIT_SOURCE")],
    "RSEditSampler": [("image", "IMAGE"), ("latent", "LATENT")],
    "RSEditDamageLoader": [("damage_model", "RSEDIT_DAMAGE_MODEL")],
    "RSEditDamageAssessment": [
        ("overlay", "IMAGE"),
        ("damage_map", "IMAGE"),
        ("no_damage", "MASK"),
        ("minor_damage", "MASK"),
        ("major_damage", "MASK"),
        ("destroyed", "MASK"),
        ("report", "STRING"),
    ],
    "RSEditLoadGeoTIFF": [("image", "IMAGE"), ("geo", "RSEDIT_GEO"), ("nodata", "MASK")],
    "RSEditSaveGeoTIFF": [],
    "RSEditInstructionBuilder": [("instruction", "STRING")],
    "RSEditSeverityLadder": [("instructions", "STRING"), ("levels", "STRING")],
    "LoadImage": [("IMAGE", "IMAGE"), ("MASK", "MASK")],
    "ImageScaleBy": [("IMAGE", "IMAGE")],
    "ImageCompositeMasked": [("IMAGE", "IMAGE")],
    "ImageStitch": [("IMAGE", "IMAGE")],
    "GrowMask": [("MASK", "MASK")],
    "PreviewAny": [],
    "SaveImage": [],
    "PreviewImage": [],
}
# Socket inputs (in slot order) of the nodes used: node type -> [(name, type)].
SOCKETS = {
    "RSEditLoader": [],
    "RSEditTextEncode": [("rsedit_model", "RSEDIT_MODEL")],
    "RSEditSourceConditioning": [("rsedit_model", "RSEDIT_MODEL"), ("image", "IMAGE")],
    "RSEditSampler": [
        ("rsedit_model", "RSEDIT_MODEL"),
        ("conditioning", "RSEDIT_TEXT"),
        ("source", "RSEDIT_SOURCE"),
        ("mask", "MASK"),
        ("regions", "RSEDIT_REGIONS"),
    ],
    "RSEditDamageLoader": [],
    "RSEditDamageAssessment": [
        ("damage_model", "RSEDIT_DAMAGE_MODEL"),
        ("pre", "IMAGE"),
        ("post", "IMAGE"),
        ("ground_truth", "IMAGE"),
        ("ground_truth_mask", "MASK"),
    ],
    "RSEditLoadGeoTIFF": [],
    "RSEditSaveGeoTIFF": [("images", "IMAGE"), ("geo", "RSEDIT_GEO"), ("nodata_mask", "MASK")],
    "RSEditInstructionBuilder": [],
    "RSEditSeverityLadder": [],
    "LoadImage": [],
    "ImageScaleBy": [("image", "IMAGE")],
    "ImageCompositeMasked": [("destination", "IMAGE"), ("source", "IMAGE"), ("mask", "MASK")],
    "ImageStitch": [("image1", "IMAGE"), ("image2", "IMAGE")],
    "GrowMask": [("mask", "MASK")],
    "PreviewAny": [("source", "*")],
    "SaveImage": [("images", "IMAGE")],
    "PreviewImage": [("images", "IMAGE")],
}
# Outputs that are lists (is_output_list): the frontend draws them as a grid (LiteGraph's GRID_SHAPE, 6).
LIST_OUTPUTS = {"RSEditSeverityLadder": (0, 1)}
SIZES = {
    "RSEditLoader": (320, 110),
    "RSEditTextEncode": (420, 260),
    "RSEditSourceConditioning": (320, 80),
    "RSEditSampler": (320, 240),
    "RSEditDamageLoader": (340, 82),
    "RSEditDamageAssessment": (340, 230),
    "RSEditLoadGeoTIFF": (340, 130),
    "RSEditSaveGeoTIFF": (340, 180),
    "RSEditInstructionBuilder": (340, 250),
    "RSEditSeverityLadder": (340, 230),
    "LoadImage": (320, 330),
    "ImageScaleBy": (320, 82),
    "ImageCompositeMasked": (320, 146),
    "ImageStitch": (320, 150),
    "GrowMask": (320, 82),
    "PreviewAny": (340, 140),
    "SaveImage": (360, 400),
    "PreviewImage": (360, 400),
}


@dataclass
class Graph:
    """A UI-format workflow being built: nodes, links, and the models its loaders name."""

    title: str
    description: str
    nodes: list[dict] = field(default_factory=list)
    links: list[list] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    def add(self, kind: str, widgets: list, column: int, row: float, title: str | None = None) -> int:
        node_id = len(self.nodes) + 1
        width, height = SIZES[kind]
        node = {
            "id": node_id,
            "type": kind,
            "pos": [40 + column * 460, 80 + row * 300],
            "size": [width, height],
            "flags": {},
            "order": node_id - 1,
            "mode": 0,
            "inputs": [{"name": name, "type": kind_, "link": None} for name, kind_ in SOCKETS[kind]],
            "outputs": [
                {"name": name, "type": kind_, "links": [], "slot_index": i}
                | ({"shape": 6} if i in LIST_OUTPUTS.get(kind, ()) else {})
                for i, (name, kind_) in enumerate(OUTPUTS[kind])
            ],
            "properties": {"Node name for S&R": kind},
            "widgets_values": widgets,
        }
        if kind.startswith("RSEdit"):
            node["properties"].update({"cnr_id": "rsedit", "ver": VERSION})
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node_id

    def link(self, source: int, slot: int, target: int, input_name: str) -> None:
        """Link an output to a socket input, or to a widget input (e.g. a STRING into the text encode's
        ``instruction``): the frontend then stores the socket with a ``widget`` entry and keeps the
        widget's value in ``widgets_values``; the link wins when the graph is queued."""
        link_id = len(self.links) + 1
        origin, dest = self.nodes[source - 1], self.nodes[target - 1]
        output = origin["outputs"][slot]
        names = [socket["name"] for socket in dest["inputs"]]
        if input_name not in names:
            dest["inputs"].append(
                {"name": input_name, "type": output["type"], "widget": {"name": input_name}, "link": None}
            )
            names.append(input_name)
        index = names.index(input_name)
        dest["inputs"][index]["link"] = link_id
        output["links"].append(link_id)
        self.links.append([link_id, source, slot, target, index, output["type"]])

    def loader(self, model: str, row: float = 0) -> int:
        if model not in self.models:
            self.models.append(model)
        node = self.add("RSEditLoader", [model, "auto", "same"], 0, row, title=f"RSEdit Loader ({model})")
        self.nodes[node - 1]["properties"]["models"] = [MODELS[model]]
        return node

    def to_json(self) -> dict:
        xs = [n["pos"][0] + n["size"][0] for n in self.nodes]
        ys = [n["pos"][1] + n["size"][1] for n in self.nodes]
        return {
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": self.nodes,
            "links": self.links,
            "groups": [
                {
                    "id": 1,
                    "title": f"{self.title}: {self.description}",
                    "bounding": [10, 10, max(xs) + 30, max(ys) + 20],
                    "color": "#3f789e",
                    "font_size": 20,
                    "flags": {},
                }
            ],
            "config": {},
            "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}},
            "version": 0.4,
            "models": [MODELS[name] for name in self.models if name in MODELS],
        }


def sampler_widgets(text_cfg: float = UNET_CFG, seed: int = defaults.SEED) -> list:
    """seed, its control_after_generate value ("fixed": reruns reproduce), steps, text and image
    scale, scheduler, variations, tile and tile overlap (0: automatic): the library's defaults, with
    the paper's text scale written out."""
    return [
        seed, "fixed", defaults.STEPS, text_cfg, defaults.IMAGE_CFG, defaults.SCHEDULER, defaults.VARIATIONS,
        defaults.TILE, 0,
    ]  # fmt: skip


def edit_chain(
    g: Graph, loader: int, image: int, instruction: str | int, column: int, row: float, title: str, cfg: float
):
    """Text encode + sampler for one instruction on a shared source; returns the sampler id. The
    instruction is a text, or the id of a node whose first output (a STRING) is linked into it."""
    linked = not isinstance(instruction, str)
    text = g.add("RSEditTextEncode", ["" if linked else instruction, ""], column, row, title=f"Instruction: {title}")
    g.link(loader, 0, text, "rsedit_model")
    if linked:
        g.link(instruction, 0, text, "instruction")
    sampler = g.add("RSEditSampler", sampler_widgets(cfg), column + 1, row, title=f"Edit: {title}")
    g.link(loader, 0, sampler, "rsedit_model")
    g.link(text, 0, sampler, "conditioning")
    g.link(image, 0, sampler, "source")
    return sampler


def single_edit(title: str, description: str, instruction: str, prefix: str, model: str = UNET, finish=None) -> Graph:
    """Load Image -> source; loader -> text, source, sampler -> Save Image. ``finish(graph,
    sampler)`` may put nodes between the sampler and Save Image; it returns the node to save."""
    g = Graph(title, description)
    cfg = BACKBONE_OF[model].default_text_cfg
    loader = g.loader(model)
    image = g.add("LoadImage", [SCENE, "image"], 0, 0.5)
    source = g.add("RSEditSourceConditioning", [defaults.SIZE_POLICY], 1, 0)
    g.link(loader, 0, source, "rsedit_model")
    g.link(image, 0, source, "image")
    sampler = edit_chain(g, loader, source, instruction, 1, 0.4, title, cfg)
    last = finish(g, sampler) if finish else sampler
    save = g.add("SaveImage", [f"rsedit/{prefix}"], 4 if finish else 3, 0)
    g.link(last, 0, save, "images")
    return g


def stitched_edits(
    title: str, description: str, steps: list[tuple[str, str]], prefix: str, chained: bool = False
) -> Graph:
    """Several instructions stitched left to right in order (same seed). Each edits the scene, or
    with ``chained`` the previous stage's result (so later stages build on earlier ones)."""
    g = Graph(title, description)
    loader = g.loader(UNET)
    image = g.add("LoadImage", [SCENE, "image"], 0, 0.5)
    source = g.add("RSEditSourceConditioning", [defaults.SIZE_POLICY], 0, 2)
    g.link(loader, 0, source, "rsedit_model")
    g.link(image, 0, source, "image")
    samplers = []
    for i, (name, text) in enumerate(steps):
        if chained and samplers:
            source = g.add(
                "RSEditSourceConditioning", [defaults.SIZE_POLICY], 3, i * 1.0 - 0.3, title=f"Source: stage {i}"
            )
            g.link(loader, 0, source, "rsedit_model")
            g.link(samplers[-1], 0, source, "image")
        samplers.append(edit_chain(g, loader, source, text, 1, i * 1.0, name, UNET_CFG))
    left = samplers[0]
    for i, right in enumerate(samplers[1:]):
        stitch = g.add("ImageStitch", ["right", True, 8, "white"], 4, i * 0.6)
        g.link(left, 0, stitch, "image1")
        g.link(right, 0, stitch, "image2")
        left = stitch
    save = g.add("SaveImage", [f"rsedit/{prefix}"], 5, 0)
    g.link(left, 0, save, "images")
    return g


# The paper-style instructions (ours). Counts are per 512x512 tile of the sample town.
FLOOD = (
    "Simulate the aftermath of a major hurricane storm surge on this coastal town. Brown floodwater covers the "
    "beach, the promenade and the first three blocks inland; about 12 buildings closest to the shore are "
    "destroyed, with roofs torn off and debris scattered around them, about 20 buildings in the next blocks show "
    "major damage with missing roof sections and standing water around their walls, and about 15 buildings "
    "further inland have minor damage such as scattered roof tiles. Uprooted trees lie across the coastal road. "
    "Keep the road grid, the shoreline position, the pier and every building more than three blocks from the "
    "shore unchanged."
)
FLOOD_DIT = (
    "Aftermath of a hurricane storm surge: brown floodwater covers the beach, the promenade and the first "
    "three blocks inland; about 12 shoreline buildings are destroyed, about 20 have major roof damage. "
    "The road grid, the shoreline, the pier and the blocks further inland are unchanged."
)
TSUNAMI = (
    "Show this coastal town after a tsunami. The wave has swept the beach and the first two blocks inland: about "
    "15 shoreline buildings are destroyed and reduced to debris fields, boats are washed onto the promenade, and "
    "a thick layer of sand and mud covers the streets near the coast. About 10 buildings in the third block have "
    "major damage with collapsed walls, and about 12 buildings in the fourth block have minor damage from water "
    "and mud, while the inland blocks and the fields stay intact. The coastline, the pier footing and the road "
    "layout remain in their original positions."
)
TORNADO = (
    "A narrow tornado track crosses the inland blocks from the south-west corner to the northern edge of the "
    "town. Along a strip about two blocks wide, around 18 buildings are destroyed with only bare slabs and "
    "scattered debris left, about 14 neighbouring buildings have major roof damage, and the trees along the track "
    "are uprooted and stripped of leaves. Buildings outside the strip, the road network, the beach and the sea are "
    "unchanged."
)
EARTHQUAKE = (
    "Depict the town after a strong earthquake. About 10 buildings in the central blocks have collapsed into "
    "rubble piles, around 20 show major damage with partially collapsed roofs and cracked walls, and about 25 "
    "have minor damage with dislodged roof tiles. Rubble spills onto two central streets. The street grid, the "
    "trees, the beach, the pier and the sea keep their exact positions and colours."
)
EARTHQUAKE_NONE = (
    "The same town after a moderate earthquake that caused no visible damage: every building keeps an intact "
    "roof and footprint, the roads are clear of debris, and the trees, the beach and the sea are unchanged. Only "
    "the sunlight differs slightly because the image was taken on another day."
)
WILDFIRE = (
    "A wildfire has burned through the south-western fields and the western edge of the town. The crop fields "
    "are charred black and grey, about 16 houses on the western blocks are destroyed with only burned foundations "
    "left, about 10 have major fire damage with blackened, partly collapsed roofs, and most trees in the western "
    "parks are burned. The eastern blocks, the beach and the sea are unaffected, and the roads stay in place."
)
WILDFIRE_DIT = (
    "A wildfire burned the south-western fields and the western edge of the town: charred black fields, about "
    "16 houses destroyed to burned foundations, about 10 with blackened roofs, burned park trees. The eastern "
    "blocks, the beach, the sea and the roads are unchanged."
)
VOLCANO = (
    "Show the town after a volcanic eruption upwind. A layer of grey volcanic ash covers the roofs, roads, "
    "fields and trees across the whole scene; a lava flow enters from the north-west corner and destroys about "
    "8 buildings along its path, and about 20 buildings under the thickest ash have major roof damage. The road "
    "grid, the coastline and the pier keep their positions, and the sea stays blue with a thin grey film near "
    "the shore."
)
URBAN = [
    (
        "site cleared",
        "Early construction stage: the three crop fields in the south-west are cleared to bare brown soil, graded "
        "building plots are marked out, and a new access road is laid from the existing street grid into the "
        "cleared area. Everything else, including all existing buildings, trees, the beach and the sea, stays "
        "unchanged.",
    ),
    (
        "under construction",
        "Mid construction stage: on the cleared south-western fields, about 20 house foundations and partly built "
        "grey concrete structures stand along two new streets, with construction vehicles and material piles "
        "between them. The existing town, its roads, its trees, the beach and the sea stay unchanged.",
    ),
    (
        "completed",
        "Completed development: the south-western fields are now a residential district with about 24 finished "
        "houses with terracotta and grey roofs, two new paved streets connected to the existing grid, and young "
        "trees in the yards. The existing town, the beach, the pier and the sea are unchanged.",
    ),
]
SEASON = (
    "Change the season from summer to winter: snow covers the roofs, the fields, the parks and the yards, the "
    "trees are bare and dark, and the grass is hidden under snow, while the cleared roads stay dark grey. The sea "
    "darkens slightly under overcast light. All buildings, roads, the beach outline and the pier keep their exact "
    "positions and shapes."
)
WATERFRONT = (
    "Flood the painted waterfront: brown floodwater covers the beach and the promenade around the pier, about 5 "
    "buildings near the shore have major damage with missing roof sections, and debris lines the flooded "
    "promenade. The pier, the roads and the building footprints stay in place."
)


def assessment() -> Graph:
    """Edit the scene, then assess (pre, edit) without and with the demo damage target."""
    g = single_edit("Damage assessment", "edit, then ChangeStar scores the edit", FLOOD, "assessment")
    damage = g.add("RSEditDamageLoader", [CHANGESTAR, "auto"], 0, 2.6)
    truth = g.add("LoadImage", [DAMAGE_TARGET, "image"], 2, 3.2, title="Ground truth (synthetic target, 0-4)")
    sampler = next(n["id"] for n in g.nodes if n["type"] == "RSEditSampler")
    scene = next(n["id"] for n in g.nodes if n["type"] == "LoadImage")
    for row, with_truth in ((1.6, False), (3.2, True)):
        title = "Assessment with ground truth (F1)" if with_truth else "Assessment (no ground truth)"
        node = g.add("RSEditDamageAssessment", [defaults.DAMAGE_TILE], 3, row, title=title)
        g.link(damage, 0, node, "damage_model")
        g.link(scene, 0, node, "pre")
        g.link(sampler, 0, node, "post")
        if with_truth:
            g.link(truth, 0, node, "ground_truth")
        preview = g.add("PreviewImage", [], 4, row)
        g.link(node, 0, preview, "images")
        report = g.add("PreviewAny", [], 3, row + 0.9, title="Report" + (" (F1 scores)" if with_truth else ""))
        g.link(node, 6, report, "source")
    return g


def upscale() -> Graph:
    def scale(g: Graph, sampler: int) -> int:
        node = g.add("ImageScaleBy", ["lanczos", 2.0], 3, 0)
        g.link(sampler, 0, node, "image")
        return node

    return single_edit(
        "Upscale and save", "the edit, 2x Lanczos with ComfyUI's Upscale Image By", FLOOD, "upscaled", finish=scale
    )


def masked() -> Graph:
    """Edit only where the region is painted: the sampler's mask keeps the rest of the scene exactly."""
    g = Graph("Masked edit", "the edit confined to the painted region by the sampler's mask (the rest is the source)")
    loader = g.loader(UNET)
    image = g.add("LoadImage", [MASKED_SCENE, "image"], 0, 0.5, title="Load Image (paint the region to edit)")
    source = g.add("RSEditSourceConditioning", [defaults.SIZE_POLICY], 1, 0)
    g.link(loader, 0, source, "rsedit_model")
    g.link(image, 0, source, "image")
    grow = g.add("GrowMask", [6, True], 1, 1.6)
    g.link(image, 1, grow, "mask")
    sampler = edit_chain(g, loader, source, WATERFRONT, 1, 0.4, "waterfront flood", UNET_CFG)
    g.link(grow, 0, sampler, "mask")
    save = g.add("SaveImage", ["rsedit/masked_edit"], 3, 0)
    g.link(sampler, 0, save, "images")
    return g


def earthquake() -> Graph:
    g = Graph("Earthquake", "a damaging earthquake and a no-damage case from the same scene")
    loader = g.loader(UNET)
    image = g.add("LoadImage", [SCENE, "image"], 0, 0.5)
    source = g.add("RSEditSourceConditioning", [defaults.SIZE_POLICY], 0, 2)
    g.link(loader, 0, source, "rsedit_model")
    g.link(image, 0, source, "image")
    for row, (name, text, prefix) in enumerate(
        [("damage", EARTHQUAKE, "earthquake"), ("no damage", EARTHQUAKE_NONE, "earthquake_no_damage")]
    ):
        sampler = edit_chain(g, loader, source, text, 1, row * 1.0, f"earthquake, {name}", UNET_CFG)
        save = g.add("SaveImage", [f"rsedit/{prefix}"], 3 + row, 0)
        g.link(sampler, 0, save, "images")
    return g


# The severity graphs: the flood scenario written by the Instruction Builder / Severity Ladder.
SWEEP_LEVELS = ("minor", "major", "catastrophic")
LADDER_LEVELS = ",".join(SEVERITIES[1:])


def severity_sweep() -> Graph:
    """Three RSEdit Instruction Builders (flood: minor, major, catastrophic), each linked into a text
    encode and a sampler on one source, stitched left to right."""
    g = Graph("Severity sweep", f"{', '.join(SWEEP_LEVELS)} flooding from the Instruction Builder, side by side")
    loader = g.loader(UNET)
    image = g.add("LoadImage", [SCENE, "image"], 0, 0.5)
    source = g.add("RSEditSourceConditioning", [defaults.SIZE_POLICY], 0, 2)
    g.link(loader, 0, source, "rsedit_model")
    g.link(image, 0, source, "image")
    samplers = []
    for i, level in enumerate(SWEEP_LEVELS):
        builder = g.add("RSEditInstructionBuilder", ["flood", level, "", "", "", False], 1, i * 1.0,
                        title=f"Instruction Builder: {level}")  # fmt: skip
        samplers.append(edit_chain(g, loader, source, builder, 2, i * 1.0, f"flood, {level}", UNET_CFG))
    left = samplers[0]
    for i, right in enumerate(samplers[1:]):
        stitch = g.add("ImageStitch", ["right", True, 8, "white"], 4, i * 0.6)
        g.link(left, 0, stitch, "image1")
        g.link(right, 0, stitch, "image2")
        left = stitch
    save = g.add("SaveImage", ["rsedit/severity"], 5, 0)
    g.link(left, 0, save, "images")
    return g


def severity_ladder() -> Graph:
    """RSEdit Severity Ladder (flood, four levels) -> one text encode -> one sampler -> Save Image:
    the ladder's output is a list, so ComfyUI runs the chain once per level (one file each)."""
    g = Graph("Severity ladder", "the flood at four severity levels from one Severity Ladder (a list, run per level)")
    loader = g.loader(UNET)
    image = g.add("LoadImage", [SCENE, "image"], 0, 0.5)
    source = g.add("RSEditSourceConditioning", [defaults.SIZE_POLICY], 1, 0)
    g.link(loader, 0, source, "rsedit_model")
    g.link(image, 0, source, "image")
    ladder = g.add("RSEditSeverityLadder", ["flood", LADDER_LEVELS, "", "", False], 1, 0.5)
    sampler = edit_chain(g, loader, source, ladder, 2, 0.4, "one per level", UNET_CFG)
    save = g.add("SaveImage", ["rsedit/severity_ladder"], 4, 0)
    g.link(sampler, 0, save, "images")
    return g


def geotiff_flood() -> Graph:
    """The flood on the 4-band 16-bit sample GeoTIFF, tiled (768x640 > the 512 px tile), saved as a
    GeoTIFF on the source's grid with its nodata corner kept, and previewed."""
    g = Graph("GeoTIFF flood", "a 4-band 16-bit UTM GeoTIFF in, the edit out on the same grid (tiled, nodata kept)")
    loader = g.loader(UNET)
    scene = g.add("RSEditLoadGeoTIFF", [GEOTIFF, "", GEOTIFF_STRETCH], 0, 0.5)
    source = g.add("RSEditSourceConditioning", [defaults.SIZE_POLICY], 1, 0)
    g.link(loader, 0, source, "rsedit_model")
    g.link(scene, 0, source, "image")
    sampler = edit_chain(g, loader, source, FLOOD, 1, 0.4, "hurricane flood", UNET_CFG)
    save = g.add("RSEditSaveGeoTIFF", ["rsedit/flood_geotiff", "deflate", False, False], 3, 0)
    g.link(sampler, 0, save, "images")
    g.link(scene, 1, save, "geo")
    g.link(scene, 2, save, "nodata_mask")
    preview = g.add("PreviewImage", [], 3, 1)
    g.link(sampler, 0, preview, "images")
    return g


def workflows() -> dict[str, Graph]:
    """File name (without .json) -> graph."""
    return {
        "rsedit_hurricane_flood": single_edit(
            "Hurricane flood", "storm surge on a coastal town (U-Net)", FLOOD, "flood"
        ),
        "rsedit_tsunami": single_edit("Tsunami", "a tsunami sweeps the shoreline blocks (U-Net)", TSUNAMI, "tsunami"),
        "rsedit_tornado": single_edit("Tornado", "a tornado track across the town (U-Net)", TORNADO, "tornado"),
        "rsedit_earthquake": earthquake(),
        "rsedit_wildfire": single_edit("Wildfire", "a wildfire burns the western edge (U-Net)", WILDFIRE, "wildfire"),
        "rsedit_volcanic_eruption": single_edit(
            "Volcanic eruption", "ash fall and a lava flow (U-Net)", VOLCANO, "volcano"
        ),
        "rsedit_urban_growth": stitched_edits(
            "Urban growth", "three construction stages, each built on the last", URBAN, "urban", chained=True
        ),
        "rsedit_seasonal_shift": single_edit("Seasonal shift", "summer to winter (U-Net)", SEASON, "season"),
        "rsedit_dit_hurricane_flood": single_edit(
            "Hurricane flood (DiT)",
            f"the flood with RSEdit-DiT, text scale {backbones.DIT.default_text_cfg:g}",
            FLOOD_DIT,
            "flood_dit",
            DIT,
        ),
        "rsedit_dit_wildfire": single_edit(
            "Wildfire (DiT)",
            f"the wildfire with RSEdit-DiT, text scale {backbones.DIT.default_text_cfg:g}",
            WILDFIRE_DIT,
            "wildfire_dit",
            DIT,
        ),
        "rsedit_severity_sweep": severity_sweep(),
        "rsedit_severity_ladder": severity_ladder(),
        "rsedit_damage_assessment": assessment(),
        "rsedit_upscale_and_save": upscale(),
        "rsedit_masked_edit": masked(),
        "rsedit_geotiff_flood": geotiff_flood(),
    }


def _draw_graph(draw, graph: Graph, box: tuple[int, int, int, int]) -> None:
    """A schematic of the graph itself: node boxes where the canvas has them (ours blue, ComfyUI's
    grey) and the links between them, scaled into ``box``."""
    x0, y0, x1, y1 = box
    left = min(n["pos"][0] for n in graph.nodes)
    top = min(n["pos"][1] - 30 for n in graph.nodes)
    right = max(n["pos"][0] + n["size"][0] for n in graph.nodes)
    bottom = max(n["pos"][1] + n["size"][1] for n in graph.nodes)
    scale = min((x1 - x0) / (right - left), (y1 - y0) / (bottom - top))

    def at(x: float, y: float) -> tuple[float, float]:
        return x0 + (x - left) * scale, y0 + (y - top) * scale

    nodes = {n["id"]: n for n in graph.nodes}
    for _, origin, _, target, _, _ in graph.links:
        a, b = nodes[origin], nodes[target]
        start = at(a["pos"][0] + a["size"][0], a["pos"][1] + a["size"][1] / 2)
        end = at(b["pos"][0], b["pos"][1] + b["size"][1] / 2)
        draw.line([start, end], fill=(150, 170, 190), width=1)
    for node in graph.nodes:
        ours = node["type"].startswith("RSEdit")
        corner = at(node["pos"][0], node["pos"][1] - 30)
        far = at(node["pos"][0] + node["size"][0], node["pos"][1] + node["size"][1])
        draw.rectangle([corner, far], fill=(52, 92, 140) if ours else (88, 88, 92), outline=(220, 220, 220))


def _geotiff_picture():
    """The sample GeoTIFF as the workflow's loader shows it (red, green, blue through the fixed
    stretch, nodata black), computed by the script that writes the file (no GDAL needed here)."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_sample_geotiff import NODATA, bands, scene_pixels

    values = bands(scene_pixels())
    low, high = (float(v) for v in GEOTIFF_STRETCH.split(","))
    rgb = np.clip((values[[2, 1, 0]].astype(np.float32) - low) / (high - low), 0, 1)
    rgb[:, (values == NODATA).any(axis=0)] = 0
    return Image.fromarray(np.rint(rgb.transpose(1, 2, 0) * 255).astype(np.uint8))


def thumbnail(graph: Graph, path: Path) -> None:
    """What the template is: its input image (left) and a schematic of its graph (right). Never a
    result image."""
    from PIL import Image, ImageDraw

    assets = ROOT / "rsedit_core" / "assets"
    uses_mask = any(n["type"] == "LoadImage" and n["widgets_values"][0] == MASKED_SCENE for n in graph.nodes)
    image = Image.new("RGB", (512, 256), (32, 34, 38))
    if any(n["type"] == "RSEditLoadGeoTIFF" for n in graph.nodes):
        picture = _geotiff_picture()
        picture.thumbnail((256, 256), Image.LANCZOS)
        image.paste(picture, (0, (256 - picture.height) // 2))
    else:
        with Image.open(assets / "sample_scene.png") as scene:
            image.paste(scene.convert("RGB").resize((256, 256), Image.LANCZOS), (0, 0))
    draw = ImageDraw.Draw(image, "RGBA")
    if uses_mask:
        sys.path.insert(0, str(ROOT / "scripts"))
        from make_sample_scene import PAINTED_BOX

        box = [round(v / 2) for v in PAINTED_BOX]
        draw.rectangle(box, outline=(255, 64, 64, 255), width=2)
    _draw_graph(draw, graph, (268, 44, 504, 248))
    draw.rectangle((0, 0, 512, 34), fill=(0, 0, 0, 170))
    draw.text((6, 4), graph.title, fill=(255, 255, 255))
    draw.text(
        (6, 19), "input: synthetic sample scene  |  the graph (RSEdit nodes blue, ComfyUI's grey)", fill=(210, 210, 210)
    )
    image.save(path, quality=85)


def write(out: Path = OUT) -> dict[str, str]:
    texts = {f"{name}.json": json.dumps(g.to_json(), indent=2) + "\n" for name, g in workflows().items()}
    out.mkdir(exist_ok=True)
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
        thumbnail(workflows()[name[:-5]], out / f"{name[:-5]}.jpg")
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with example_workflows/ instead of writing")
    args = parser.parse_args()
    if args.check:
        stale = [
            f"{name}.json"
            for name, g in workflows().items()
            if not (OUT / f"{name}.json").is_file()
            or (OUT / f"{name}.json").read_text(encoding="utf-8") != json.dumps(g.to_json(), indent=2) + "\n"
        ]
        if stale:
            print(f"out of date: {', '.join(stale)}; run python scripts/make_workflows.py")
            return 1
        return 0
    for name in write():
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
