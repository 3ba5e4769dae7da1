"""Refactor check: stylize clips with a spread of settings through the command line and record a hash
of every saved frame, so that a restructured vidiff can be shown to give bit-identical frames.

    python benchmarks/golden_frames.py REPO OUT.json [CASE ...]   # REPO's .venv/bin/python runs vidiff

Run it on a checkout before the change and on one after, then compare the two JSON files (equal
dictionaries: the frames are bit-identical). Every sampler, fixed/per-frame/warped noise, blend,
flow-blend, fusion, colour matching, cross-frame attention, ControlNet, SDXL, LoRA, keyframes,
batching, skip-similar, a clip with a hard cut, and the wooden-carving preset; tiny models, offline,
about two minutes on two CPU cores. The clips, a tiny ControlNet and a LoRA are made once in an
`assets` folder beside OUT.json. Not a benchmark: nothing here is timed.
"""
import hashlib, json, os, subprocess, sys, tempfile
from pathlib import Path

repo, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
only = sys.argv[3:]  # optional case names
py = repo / ".venv/bin/python"
work = out.parent / "assets"; work.mkdir(parents=True, exist_ok=True)
env = {**os.environ, "HF_HUB_OFFLINE": "1"}

def ffmpeg():
    return subprocess.run([str(py), "-c", "import imageio_ffmpeg;print(imageio_ffmpeg.get_ffmpeg_exe())"],
                          capture_output=True, text=True, check=True).stdout.strip()

clip = work / "pan.mp4"; cut = work / "cut.mp4"
if not clip.exists():
    ff = ffmpeg()
    subprocess.run([ff, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=24", "-t", "0.5",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "10", str(clip)], check=True)
    subprocess.run([ff, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=24:duration=0.3",
                    "-f", "lavfi", "-i", "smptebars=size=96x64:rate=24:duration=0.3",
                    "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "10", str(cut)], check=True)
cn = work / "controlnet"; lora = work / "lora"
if not cn.exists():
    code = f"""
import sys; sys.path.insert(0, {str(repo / 'tests')!r})
from helpers import tiny_controlnet, write_tiny_lora
from vidiff.models.tiny import tiny_parts
import torch
torch.manual_seed(0)  # from_unet draws the ControlNet's new layers from the global generator
tiny_controlnet(tiny_parts().unet).save_pretrained({str(cn)!r})
write_tiny_lora(__import__('pathlib').Path({str(lora)!r}))
"""
    subprocess.run([str(py), "-c", code], check=True, env=env, cwd=repo)

base = ["--model", "tiny", "--max-side", "96", "--steps", "6", "--strength", "0.6", "--prompt", "a wooden carving",
        "--negative-prompt", "blurry", "-q"]
cases = {}
for s in ["ddim", "pndm", "euler", "euler-a", "dpm++2m", "dpm++2m-karras", "unipc", "lcm"]:
    cases[f"sampler-{s}"] = (clip, ["--scheduler", s, "--max-frames", "5"])
cases["per-frame"] = (clip, ["--noise", "per-frame", "--max-frames", "6", "--batch-size", "4"])
cases["warped"] = (clip, ["--noise", "warped", "--scheduler", "ddim", "--max-frames", "6"])
cases["blend"] = (clip, ["--blend", "0.3", "--max-frames", "5"])
cases["flow-blend"] = (clip, ["--flow-blend", "0.4", "--max-frames", "5"])
cases["fusion"] = (clip, ["--fusion", "0.8", "--fusion-end", "0.5", "--max-frames", "5"])
cases["color-match"] = (cut, ["--color-match", "--max-frames", "14", "--batch-size", "3"])
cases["cross-frame"] = (cut, ["--cross-frame-attn", "--max-frames", "14", "--batch-size", "4"])
cases["cross-frame-1"] = (clip, ["--cross-frame-attn", "--max-frames", "5", "--batch-size", "1"])
cases["controlnet"] = (clip, ["--controlnet", f"{cn}:0.8", "--control", "softedge", "--max-frames", "5"])
cases["sdxl"] = (clip, ["--model", "tiny-sdxl", "--max-frames", "4", "--guidance", "5"])
cases["lora"] = (clip, ["--lora", f"{lora / 'pytorch_lora_weights.safetensors'}:0.7", "--max-frames", "4"])
cases["keyframes"] = (clip, ["--strength", "0:0.4, 8:0.8", "--seed", "0:1, 5:7", "--guidance", "0:1, 8:6",
                              "--mix", "a frog:0:0, 8:1", "--prompt", "0:a cat | 10:a dog", "--max-frames", "11"])
cases["batching"] = (clip, ["--batch-size", "5", "--max-frames", "11", "--noise", "warped", "--color-match"])
cases["skip-similar"] = (clip, ["--skip-similar", "200", "--max-frames", "6"])
cases["everything"] = (cut, ["--preset", "wooden-carving", "--model", "tiny", "--max-side", "96", "--steps", "6",
                             "--noise", "warped", "--cross-frame-attn", "--max-frames", "14"])
cases["cuts-off"] = (cut, ["--no-cuts", "--flow-blend", "0.3", "--max-frames", "14"])

results = json.loads(out.read_text()) if out.exists() and only else {}
for name, (src, extra) in cases.items():
    if only and name not in only:
        continue
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames"
        args = [str(py), "-m", "vidiff", "stylize", str(src), str(Path(tmp) / "out.mp4"), *base, *extra,
                "--save-frames", str(frames)]
        if name == "everything":
            args = [str(py), "-m", "vidiff", "stylize", str(src), str(Path(tmp) / "out.mp4"), *extra, "-q",
                    "--save-frames", str(frames)]
        done = subprocess.run(args, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(name, "FAILED", done.stderr[-2000:]); results[name] = "failed"; continue
        import cv2
        hashes = [hashlib.sha256(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).tobytes()).hexdigest()[:16]
                  for p in sorted(frames.glob("*.png"))]
        results[name] = hashes
        print(name, len(hashes), flush=True)
out.write_text(json.dumps(results, indent=1))
