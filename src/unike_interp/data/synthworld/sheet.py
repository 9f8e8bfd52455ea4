"""A labelled contact sheet of a world's subjects, each drawn in every layout (``unike world show``)."""

from __future__ import annotations

from .render import contact_sheet, render
from .vocab import LAYOUTS


def subject_sheet(world, n_subjects: int = 12, scale: int = 4):
    """A Pillow image: the first ``n_subjects`` subjects x :data:`LAYOUTS`, two subjects per row."""
    images, labels = [], []
    for subj in world.subjects[:n_subjects]:
        for layout in LAYOUTS:
            images.append(render(subj.scene(layout)))
            f = subj.facts
            labels.append(f"{subj.name} ({subj.split[0]})\n{f['size']} {f['color']} {f['shape']}\n{f['pattern']} {f['material']}")
    title = (f"{min(n_subjects, len(world.subjects))} subjects, each in the {len(LAYOUTS)} layouts ({', '.join(LAYOUTS)}); "
             "labels: name (split: i = image-seen, the generator trained on its images;\n"
             "t = text-only, its images never shown to the generator), size colour shape, pattern material")
    return contact_sheet(images, labels, columns=len(LAYOUTS) * 2, scale=scale, title=title), len(images)
