"""Semantic FPN and UNet side by side on the same encoders, measured in the same run.

Per encoder: how many times faster the FPN network is than the UNet one, and what the UNet's
extra parameters and FLOPs are. Both rows of a pair come from this run, so the ratio does not
mix machines or moments.
"""

from tabulate import tabulate

from segbench.bench import Benchmark, main
from segbench.report import DASH, millions, num, status_text, throughput_text

HEADERS = ["encoder", "FPN img/s", "UNet img/s", "FPN / UNet speed", "params FPN / UNet",
           "UNet extra params", "GFLOPs FPN / UNet", "UNet FLOPs x"]


def speed(r) -> str:
    return DASH if r is None else throughput_text(r.timing) if r.ok else status_text(r)


def pair_row(encoder: str, fpn, unet) -> list[str]:
    name = (fpn or unet).extra.get("display", encoder).split(" + ")[0]
    if not (fpn and unet and fpn.ok and unet.ok):
        return [name, speed(fpn), speed(unet)] + [DASH] * 5
    p_fpn, p_unet = fpn.extra["params_enc_dec"], unet.extra["params_enc_dec"]
    return [name, speed(fpn), speed(unet), num(fpn.throughput / unet.throughput, 2),
            f"{millions(p_fpn)} / {millions(p_unet)}", f"+{(p_unet - p_fpn) / 1e6:.2f}M",
            f"{num(fpn.gflops, 2)} / {num(unet.gflops, 2)}", f"{unet.gflops / fpn.gflops:.2f}x"]


def pair_table(bench, results):
    pairs: dict[str, dict] = {}
    for r in results.records:
        pairs.setdefault(r.name, {})[r.family] = r
    rows = [pair_row(enc, p.get("fpn"), p.get("unet")) for enc, p in pairs.items()]
    rows.sort(key=lambda row: -float(row[3]) if row[3] != DASH else 0.0)
    return [("", tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True))]


BENCHMARK = Benchmark(
    name="combined",
    title="FPN versus UNet on the same encoders, torch.compile + bf16 autocast",
    families=["fpn", "unet"],
    models=["mobileone_s0", "mobilenetv4_conv_small", "mobilenetv4_conv_medium", "resnet18"],
    quick_models=["mobilenetv4_conv_small"],
    tables=pair_table,
)

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK))
