"""Variants of the semi-supervised LDA, patched in for experiments (env SSLDA_VAR)."""
import os
import numpy as np
from cellssl_jax.fewshot import transduce, differential as D
from cellssl_jax.fewshot.transduce import shrunk_covariance

orig = transduce.semi_supervised_lda

def sslda(z_lab, y_lab, z_fold, n_classes, dims=transduce.SSLDA_DIMS, iters=transduce.SSLDA_ITERS, pseudo=1.0):
    var = os.environ.get("SSLDA_VAR", "")
    anchor = float(os.environ.get("SSLDA_ANCHOR", "0"))  # 0: weight 1; else labelled total = anchor * balanced share
    hard = "hard" in var
    d = min(dims, z_lab.shape[1])
    zl, zf = np.asarray(z_lab, float)[:, :d], np.asarray(z_fold, float)[:, :d]
    onehot = np.eye(n_classes)[y_lab]
    if anchor > 0:
        per = np.bincount(y_lab, minlength=n_classes)
        w = np.maximum(1.0, anchor * len(zf) / n_classes / per[y_lab])
        onehot = onehot * w[:, None]
    resp = np.zeros((len(zf), n_classes))
    prior = np.full(n_classes, 1.0 / n_classes)
    loglik = np.zeros_like(resp)
    for it in range(iters + 1):
        r_use = resp
        if hard and it > 0:
            r_use = np.eye(n_classes)[resp.argmax(1)] * (resp.max(1, keepdims=True) > 0.5)
        weights = np.vstack([onehot, r_use])
        z = np.vstack([zl, zf])
        mass = weights.sum(axis=0)
        means = (weights.T @ z) / mass[:, None]
        scatter, fourth = np.zeros((d, d)), 0.0
        for c in range(n_classes):
            r = z - means[c]
            scatter += (r * weights[:, c:c + 1]).T @ r
            fourth += float((weights[:, c] ** 2 * (r * r).sum(axis=1) ** 2).sum())
        rows = len(z) * n_classes
        cov = shrunk_covariance(scatter, fourth, rows) * (rows / mass.sum())
        white = np.linalg.cholesky(np.linalg.inv(cov))
        zw, mw = zf @ white, means @ white
        loglik = -0.5 * ((zw * zw).sum(axis=1)[:, None] - 2.0 * zw @ mw.T + (mw * mw).sum(axis=1)[None, :])
        if it == iters:
            break
        logp = loglik + (0 if "uniform" in var else np.log(prior))
        resp = np.exp(logp - logp.max(axis=1, keepdims=True))
        resp /= resp.sum(axis=1, keepdims=True)
        prior = (resp.sum(axis=0) + pseudo) / (len(zf) + n_classes * pseudo)
    post = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    return post / post.sum(axis=1, keepdims=True), prior

D.semi_supervised_lda = sslda
