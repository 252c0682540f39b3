"""Run from the repository root: python experiments/results/class-weights/skewed_prior.py

Cost of class_weights=balanced on a skewed class prior: MNIST subsampled to a 10:1 prior (pool and test alike),
random labeled sets of 100, plain vs balanced test accuracy."""
import numpy as np, torch, sys
from autoal.config import read_config_file, from_dict
from autoal.data import load_dataset
from autoal.loop import make_learner
d = np.load('../shared/data/mnist10k.npz')
rng = np.random.default_rng(0)
keep_p = np.exp(-np.arange(10) * np.log(10) / 9)  # class 0 kept whole, class 9 a tenth
out = {}
for split in ('train', 'val', 'test'):
    x, y = d[f'{split}_images'], d[f'{split}_labels']
    keep = rng.random(len(y)) < keep_p[y.ravel()]
    out[f'{split}_images'], out[f'{split}_labels'] = x[keep], y[keep]
np.savez('/tmp/mnist-skewed.npz', **out)
print('test class counts', np.bincount(out['test_labels'].ravel()))
raw = {**read_config_file('experiments/results/mnist-recipe/config.toml'), 'dataset': 'npz:/tmp/mnist-skewed.npz'}
data = load_dataset(from_dict(raw).dataset, None, 28, 0)
for size in (40, 100, 220):
    for seed in range(3):
        rows = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))[:size]
        accs = []
        for cw in ('none', 'balanced'):
            cfg = from_dict({**raw, 'class_weights': cw, 'seed': seed})
            learner = make_learner(cfg, data, torch.device('cpu'), needs=frozenset({'probs'}))
            accs.append(learner.evaluate(learner.fit(rows, seed)))
        print(f"n={size} seed {seed}: none acc {accs[0][0]:.3f} auc {accs[0][1]:.3f}   balanced acc {accs[1][0]:.3f} auc {accs[1][1]:.3f}", flush=True)
