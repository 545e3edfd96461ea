"""DGCNN (Song, Zheng, Song and Cui, IEEE Trans. Affective Computing 2018): the dynamical graph convolutional
network on the DE features of the 62 electrodes, the paper's main graph baseline (SST-EmotionNet's table 1:
SEED 90.40 +- 8.49, SEED-IV 69.88 +- 16.29). `[model] name = dgcnn` trains it through the model-kind registry
(sst.models.kinds) with the network's splits, normalisation, model selection, files and tables.

    net = DGCNN(nb_class=3)                     # the paper's form: Chebyshev filters on the normalised Laplacian
    net = DGCNN(nb_class=3, form="public")      # TorchEEG's and xueyunlong12589/DGCNN's form
    logits = net(de)                            # (N, 62, 5) z-scored DE -> (N, nb_class)

The paper's form (`form="paper"`, the default), as the paper's equations say:
  * a learnable adjacency W (62 x 62), kept non-negative by a ReLU where it is used (the paper applies the ReLU
    after each update: the same W is seen by the forward pass), and its normalised Laplacian
    L = I - D^-1/2 W D^-1/2, D = diag of W's row sums (+ 1e-5, LibEER's guard against an empty row);
  * a Chebyshev graph convolution of order K: the K terms T_0(L~) x .. T_{K-1}(L~) x of the recurrence
    T_0 = I, T_1 = L~, T_k = 2 L~ T_{k-1} - T_{k-2} on the scaled Laplacian L~ = 2 L / lambda_max - I, each
    filtered by its own weights Theta_k (bands -> `channels`), summed;
  * then a 1x1 convolution (per electrode, channels -> channels, with bias), a ReLU, dropout, and a fully
    connected layer (62 * channels -> nb_class); cross-entropy plus the L2 term on the filters, the 1x1
    convolution and the fully connected layer ([training] l2, optim.param_groups' `regularized` modules).
The public form (`form="public"`), as TorchEEG's models/gnn/dgcnn.py and the xueyunlong12589/DGCNN code it
cites compute it: a BatchNorm over the bands of the input; A^ = D^-1/2 ReLU(W) D^-1/2 (+ 1e-10); plain powers
I, A^, A^2, .. A^(K-1) of it (no Laplacian, no Chebyshev recurrence), each with its own weights, summed, ReLU;
flattened; a hidden layer of `hidden` units (64) with ReLU; the output layer.

Decided here, where the paper is silent (docs/model.md lists each with its source):
  * lambda_max = 2, the bound of a normalised Laplacian's eigenvalues (ChebNet's usual choice; the paper does not
    say whether it computes lambda_max), so L~ = L - I;
  * K = 2 and 64 filters, dropout 0.5 before the last layer: LibEER's DGCNN for SEED and SEED-IV
    (config/model_param/DGCNN.yaml: "k ... 2 set by official", "dropout 0.5 set by official", layers 64 for
    SEED and SEED-IV), the public implementation closest to the paper's equations;
  * initialisation: Xavier-uniform for W and the filters (LibEER), PyTorch's defaults for the 1x1 convolution
    and the output layer.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMS = ("paper", "public")
LAMBDA_MAX = 2.0        # the normalised Laplacian's eigenvalues lie in [0, 2]


class Adjacency(nn.Module):
    """The learnable graph: W (n, n); `normalised_laplacian()` and `normalised()` read it through a ReLU."""

    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, n))
        nn.init.xavier_uniform_(self.weight)

    def normalised(self, eps: float) -> torch.Tensor:
        """D^-1/2 ReLU(W) D^-1/2, D the diagonal of ReLU(W)'s row sums (+ eps)."""
        w = F.relu(self.weight)
        d = (w.sum(1) + eps).rsqrt()
        return d[:, None] * w * d[None, :]

    def normalised_laplacian(self, eps: float = 1e-5) -> torch.Tensor:
        """L = I - D^-1/2 ReLU(W) D^-1/2."""
        return torch.eye(self.weight.shape[0], dtype=self.weight.dtype, device=self.weight.device) - self.normalised(eps)


def chebyshev_terms(x: torch.Tensor, scaled_laplacian: torch.Tensor, order: int) -> list[torch.Tensor]:
    """[T_0(L~) x, ..., T_{order-1}(L~) x] for node features x (N, n, F): the recurrence T_k = 2 L~ T_{k-1} - T_{k-2},
    applied to x (never forming the matrices)."""
    terms = [x]
    if order > 1:
        terms.append(scaled_laplacian @ x)
    for _ in range(2, order):
        terms.append(2 * (scaled_laplacian @ terms[-1]) - terms[-2])
    return terms


def power_terms(x: torch.Tensor, adjacency: torch.Tensor, order: int) -> list[torch.Tensor]:
    """[x, A x, A^2 x, ..., A^(order-1) x] (the public form's supports)."""
    terms = [x]
    for _ in range(1, order):
        terms.append(adjacency @ terms[-1])
    return terms


class GraphFilter(nn.Module):
    """sum_k terms[k] @ Theta_k: one (in -> out) weight matrix per term, no bias."""

    regularized = True      # the paper's L2 (optim.param_groups)

    def __init__(self, order: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(order, in_features, out_features))
        for k in range(order):
            nn.init.xavier_uniform_(self.weight[k])

    def forward(self, terms: list[torch.Tensor]) -> torch.Tensor:
        return sum(t @ w for t, w in zip(terms, self.weight))


class RegularizedLinear(nn.Linear):
    """A linear layer under the paper's L2 (optim.param_groups decays `regularized` modules' weights)."""

    regularized = True


class DGCNN(nn.Module):
    """DGCNN on (N, n_electrodes, n_bands) DE features; `form` "paper" or "public" (module docstring)."""

    sources = {"de": "de"}      # the preprocessed array it reads (sst.models.trained.TrainedModel.source_arrays)

    def __init__(self, nb_class: int = 3, n_electrodes: int = 62, n_bands: int = 5, order: int = 2,
                 channels: int = 64, hidden: int = 64, dropout: float = 0.5, form: str = "paper"):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"{form=} is not one of {FORMS}")
        if order < 1:
            raise ValueError(f"{order=} must be at least 1")
        self.form, self.order = form, order
        self.adjacency = Adjacency(n_electrodes)
        self.filter = GraphFilter(order, n_bands, channels)
        if form == "paper":
            self.conv1x1 = RegularizedLinear(channels, channels)      # a 1x1 convolution over the electrodes
            self.dropout = nn.Dropout(dropout)
            self.fc = RegularizedLinear(n_electrodes * channels, nb_class)
        else:
            self.bn = nn.BatchNorm1d(n_bands)
            self.fc1 = RegularizedLinear(n_electrodes * channels, hidden)
            self.fc2 = RegularizedLinear(hidden, nb_class)

    def forward(self, de: torch.Tensor) -> torch.Tensor:
        """(N, n_electrodes, n_bands) -> (N, nb_class) logits."""
        x = de.to(self.filter.weight.dtype)      # float32 inputs; float64 in the parity tests
        if self.form == "public":
            x = self.bn(x.transpose(1, 2)).transpose(1, 2)                          # over the bands
            terms = power_terms(x, self.adjacency.normalised(1e-10), self.order)
            h = F.relu(self.filter(terms)).flatten(1)                               # (N, n * channels)
            return self.fc2(F.relu(self.fc1(h)))
        laplacian = self.adjacency.normalised_laplacian()
        scaled = 2 * laplacian / LAMBDA_MAX - torch.eye(laplacian.shape[0], dtype=x.dtype, device=x.device)
        h = self.filter(chebyshev_terms(x, scaled, self.order))                    # (N, n, channels)
        h = F.relu(self.conv1x1(h))
        return self.fc(self.dropout(h.flatten(1)))
