"""The ``fg3dgs`` command line."""

from __future__ import annotations

import argparse
import sys
import time

from . import __version__


def _cmd_demo(args: argparse.Namespace) -> int:
    import imageio.v3 as iio
    import numpy as np
    import torch

    from .io_utils import atomic_output
    from .render import rasterize
    from .scenes import demo_scene, frontal_camera

    scene = demo_scene(args.gaussians, seed=args.seed)
    cams = [frontal_camera(args.size, yaw_deg=yaw) for yaw in args.yaw]
    viewmats = torch.stack([c.viewmat for c in cams])
    Ks = torch.stack([c.K for c in cams])
    bg = torch.tensor([1.0, 1.0, 1.0])
    start = time.perf_counter()
    with torch.no_grad():
        rgb, _, info = rasterize(scene.means, scene.quats, scene.scales, scene.opacities,
                                 scene.colors, viewmats, Ks, args.size, args.size,
                                 sh_degree=scene.sh_degree, background=bg,
                                 backend=args.backend)
    ms = 1000 * (time.perf_counter() - start)
    image = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    image = np.concatenate(list(image), axis=1)          # views side by side
    with atomic_output(args.out) as tmp:
        iio.imwrite(tmp, image, extension=".png")
    print(f"wrote {args.out}: {len(scene)} Gaussians, {len(cams)} views at "
          f"{args.size}x{args.size}, backend {info['backend']}, {ms:.0f} ms (first call "
          f"includes kernel loading)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fg3dgs", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fg3dgs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="render the built-in demo Gaussian head to a PNG")
    demo.add_argument("--out", default="demo.png", help="output PNG (default: demo.png)")
    demo.add_argument("--size", type=int, default=512, help="image size in pixels")
    demo.add_argument("--gaussians", type=int, default=30000, help="number of Gaussians")
    demo.add_argument("--yaw", type=float, nargs="+", default=[-35.0, 0.0, 35.0],
                      help="camera yaw angles in degrees, one view each")
    demo.add_argument("--backend", choices=["auto", "cpu", "gsplat"], default="auto")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "size", 1) < 1 or getattr(args, "gaussians", 1) < 1:
        print("fg3dgs: error: --size and --gaussians must be positive", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
