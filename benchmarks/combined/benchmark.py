"""Semantic FPN and UNet side by side on the same encoders, measured in the same run.

Per encoder: how many times faster the FPN network is than the UNet one, and what the UNet's
extra parameters and FLOPs are. Both rows of a pair come from this run, so the ratio does not
mix machines or moments.
"""

from segbench import report
from segbench.bench import Benchmark, main
from segbench.report import DASH, millions, num


def pair_table(bench, results):
    by_encoder = {}
    for r in results.records:
        by_encoder.setdefault(r.key.split("|")[1], {})[r.family] = r
    rows = []
    for encoder, pair in by_encoder.items():
        fpn, unet = pair.get("fpn"), pair.get("unet")
        both = fpn is not None and unet is not None and fpn.ok and unet.ok
        ratio = fpn.throughput / unet.throughput if both else None
        name = (fpn or unet).extra.get("display", encoder).split(" + ")[0]
        rows.append([
            name,
            report.throughput_text(fpn.timing) if fpn and fpn.ok else report.status_text(fpn) if fpn else DASH,
            report.throughput_text(unet.timing) if unet and unet.ok else report.status_text(unet) if unet else DASH,
            num(ratio, 2),
            f"{millions(fpn.extra.get('params_enc_dec'))} / {millions(unet.extra.get('params_enc_dec'))}" if both else DASH,
            f"+{(unet.extra['params_enc_dec'] - fpn.extra['params_enc_dec']) / 1e6:.2f}M" if both else DASH,
            f"{num(fpn.gflops, 2)} / {num(unet.gflops, 2)}" if both else DASH,
            f"{unet.gflops / fpn.gflops:.2f}x" if both and fpn.gflops else DASH,
        ])
    rows.sort(key=lambda row: -float(row[3]) if row[3] != DASH else 0.0)
    headers = ["encoder", "FPN img/s", "UNet img/s", "FPN / UNet speed", "params FPN / UNet",
               "UNet extra params", "GFLOPs FPN / UNet", "UNet FLOPs x"]
    return [("", report.tabulate(rows, headers=headers, tablefmt="github",
                                  disable_numparse=True))]


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
