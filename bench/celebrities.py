"""Identification on the 5-celebrity photos with the default pipeline; prints a table.

Enrolls every usable `train` photo, identifies every `val` photo, then, for each person in turn,
leaves them out of the roster and checks whether their `val` photos are let in as someone else.

    .venv/bin/python bench/celebrities.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.app import Facerec, Photo  # noqa: E402
from service.app.photos import photos_by_person  # noqa: E402
from service.config import load_config  # noqa: E402
from service.roster.memory import MemoryRoster  # noqa: E402


def main() -> None:
    config = load_config()
    core = Facerec(config)
    door = core.recognition
    celeb = ROOT / "models" / "data" / "5-celebrity"
    roster, refused = door.folder_gallery(celeb / "train")
    enrolled = sum(len(roster.encodings_of(p)) for p in roster.people)
    print(f"enrolled {enrolled} train photos of {len(roster)} people; refused {len(refused)}: "
          + ", ".join(f"{r.person}/{r.reason}" for r in refused))
    print(f"threshold {config.threshold}\n")
    print(f"{'person':<15} {'answer':<20} {'own dist':>8} {'nearest other':>14}")
    probes, rows = [], []
    for person, photos in photos_by_person(celeb / "val").items():
        for photo in photos:
            face = door.identify(Photo.from_path(photo), top_k=len(roster), gallery=roster).faces[0]
            encoding = core.pipeline.encode(door_face(core, photo))[0].encoding
            probes.append((person, encoding))
            own = next(c.distance for c in face.candidates if c.person == person)
            other = min(c.distance for c in face.candidates if c.person != person)
            rows.append((face.candidates[0].person == person, face.match == person, own, other))
            print(f"{person:<15} {face.match or 'not in the database':<20} {own:8.3f} {other:14.3f}")
    rank1, accepted, own, other = (np.array(col) for col in zip(*rows))
    print(f"\nrank-1 (nearest person right): {rank1.sum()}/{len(rows)}")
    print(f"identified at threshold {config.threshold}: {accepted.sum()}/{len(rows)}; "
          f"wrong person accepted: {int(((other < config.threshold)).sum())}")
    print(f"own-person distance: min {own.min():.3f} median {np.median(own):.3f} max {own.max():.3f}; "
          f"nearest other person: min {other.min():.3f}")
    let_in = 0
    for stranger in roster.people:
        partial = MemoryRoster()
        for person in roster.people:
            if person != stranger:
                partial.add(person, roster.encodings_of(person))
        let_in += sum(door.nearest_people(e, 1, partial)[0].distance < config.threshold
                      for p, e in probes if p == stranger)
    print(f"strangers (each person left out in turn) let in: {let_in}/{len(probes)}")
    compare_aggregations(roster, probes, config.threshold)


def door_face(core: Facerec, photo: Path):
    """The face identify answers for: the most prominent one in the photo."""
    from service.app.rules import by_prominence

    return by_prominence(core.pipeline.locate(photo))[:1]


def compare_aggregations(roster: MemoryRoster, probes, threshold: float) -> None:
    """How to score a person with several photos: nearest photo, mean of the 3 nearest, or centroid."""
    scores = {"nearest photo": [], "mean of 3 nearest": [], "centroid": []}
    for truth, encoding in probes:
        for person in roster.people:
            photos = roster.encodings_of(person)
            ranked = np.sort(np.linalg.norm(photos - encoding, axis=1))
            centre = photos.mean(axis=0)
            genuine = person == truth
            scores["nearest photo"].append((genuine, ranked[0]))
            scores["mean of 3 nearest"].append((genuine, ranked[:3].mean()))
            scores["centroid"].append((genuine, np.linalg.norm(centre / np.linalg.norm(centre) - encoding)))
    print(f"\n{'person score':<18} {'genuine max':>11} {'genuine < thr':>13} {'impostor min':>12}")
    for name, rows in scores.items():
        genuine = np.array([d for g, d in rows if g])
        impostor = np.array([d for g, d in rows if not g])
        print(f"{name:<18} {genuine.max():11.3f} {f'{(genuine < threshold).sum()}/{len(genuine)}':>13} "
              f"{impostor.min():12.3f}")


if __name__ == "__main__":
    main()
