"""Prior correction and count intervals: EM recovers known proportions and matches an
independent implementation of Saerens et al. (2002); the adjusted count inverts a hand-made
confusion; the bootstrap interval covers the truth."""

from __future__ import annotations

import numpy as np
import pytest

from cellssl_jax.fewshot.quantify import (
    adjusted_count,
    confusion_rates,
    count_interval,
    em_priors,
    fit_temperature,
    matching_temperature,
    refit_interval,
    reweight,
    softened_em_priors,
    temper,
)


def gaussian_folder(prior, n=20000, seed=0, shift=1.5):
    """Cells of 1-D Gaussian classes (means 0, shift, 2 shift, ...) in proportions `prior`, and
    their exact posteriors under a uniform prior (what a balanced classifier would give)."""
    rng = np.random.default_rng(seed)
    k = len(prior)
    y = rng.choice(k, size=n, p=prior)
    x = rng.normal(shift * y, 1.0)
    loglik = -0.5 * (x[:, None] - shift * np.arange(k)[None, :]) ** 2
    post = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    return y, post / post.sum(axis=1, keepdims=True)


def saerens_reference(post, train_prior, iters):
    """Saerens, Latinne & Decaestecker (2002), eqs. 2.9-2.10, written as loops."""
    n, k = len(post), len(post[0])
    prior = list(train_prior)
    for _ in range(iters):
        new_post = []
        for i in range(n):
            w = [prior[j] / train_prior[j] * post[i][j] for j in range(k)]
            s = sum(w)
            new_post.append([v / s for v in w])
        prior = [sum(new_post[i][j] for i in range(n)) / n for j in range(k)]
    return np.array(prior), np.array(new_post)


def test_em_recovers_known_proportions():
    truth = np.array([0.6, 0.3, 0.08, 0.02])
    y, post = gaussian_folder(truth)
    naive = post.mean(axis=0)  # the balanced posteriors' average: pulled towards uniform
    prior, adjusted = em_priors(post)
    empirical = np.bincount(y, minlength=4) / len(y)
    assert np.abs(prior - empirical).max() < 0.01
    assert np.abs(naive - empirical).max() > 0.05  # the correction is doing the work
    np.testing.assert_allclose(adjusted.sum(axis=1), 1.0)


def test_em_matches_an_independent_implementation():
    rng = np.random.default_rng(3)
    post = rng.dirichlet(np.ones(3), size=40)
    train_prior = np.array([0.5, 0.3, 0.2])
    ref_prior, ref_post = saerens_reference(post.tolist(), train_prior.tolist(), iters=25)
    prior, adjusted = em_priors(post, train_prior, max_iter=25, tol=0.0)
    np.testing.assert_allclose(prior, ref_prior, rtol=1e-10)
    # em_priors returns the posteriors re-weighted by the final prior (one step further)
    np.testing.assert_allclose(adjusted, reweight(post, prior, train_prior), rtol=1e-10)
    assert np.abs(adjusted - ref_post).max() < 0.01


def test_pseudo_cells_keep_a_rare_class_alive():
    truth = np.array([0.7, 0.29, 0.01])
    _, post = gaussian_folder(truth, n=300, seed=1, shift=0.5)  # heavily overlapping classes
    plain, _ = em_priors(post)
    kept, _ = em_priors(post, pseudo=5.0)
    assert np.isfinite(kept).all() and kept.min() >= 5.0 / (300 + 3 * 5.0) - 1e-12
    assert kept.min() > plain.min()


def test_reweight_hand_case_and_all_zero_rows():
    post = np.array([[0.5, 0.5], [1.0, 0.0]])
    out = reweight(post, np.array([0.8, 0.2]))
    np.testing.assert_allclose(out[0], [0.8, 0.2])
    np.testing.assert_allclose(out[1], [1.0, 0.0])
    out = reweight(np.array([[0.0, 1.0]]), np.array([1.0, 0.0]))  # nothing left: keep the old
    np.testing.assert_allclose(out, [[0.0, 1.0]])


def test_confusion_rates_hand_case():
    rates = confusion_rates(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), 3)
    np.testing.assert_allclose(rates, [[2 / 3, 1 / 3, 0], [0, 1, 0], [0, 0, 1]])


def test_adjusted_count_inverts_a_hand_made_confusion():
    rates = np.array([[0.8, 0.2], [0.1, 0.9]])
    truth = np.array([0.3, 0.7])
    q = rates.T @ truth  # (0.31, 0.69) by hand
    np.testing.assert_allclose(q, [0.31, 0.69])
    np.testing.assert_allclose(adjusted_count(q, rates), truth, atol=1e-6)
    rng = np.random.default_rng(0)
    rates3 = rng.dirichlet([8, 1, 1], size=3)[:, [0, 1, 2]]
    rates3 = np.array([np.roll(r, i) for i, r in enumerate(rates3)])
    truth3 = np.array([0.5, 0.35, 0.15])
    np.testing.assert_allclose(adjusted_count(rates3.T @ truth3, rates3),
                               np.linalg.solve(rates3.T, rates3.T @ truth3), atol=1e-6)


def test_adjusted_count_stays_a_distribution_when_infeasible():
    rates = np.array([[0.6, 0.4], [0.4, 0.6]])
    p = adjusted_count(np.array([0.95, 0.05]), rates)  # beyond what any prior can produce
    assert (p >= 0).all() and p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(p, [1.0, 0.0], atol=1e-9)


def test_count_interval_covers_the_truth_and_narrows_with_labels():
    rng = np.random.default_rng(5)
    truth = np.array([0.6, 0.3, 0.1])
    rates = np.array([[0.85, 0.1, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    covered, widths = [], {}
    for n_lab in (5, 50):
        w = []
        for rep in range(20):
            y = rng.choice(3, size=500, p=truth)
            pred = np.array([rng.choice(3, p=rates[c]) for c in y])
            cv_true = np.repeat(np.arange(3), n_lab)
            cv_pred = np.array([rng.choice(3, p=rates[c]) for c in cv_true])
            low, high = count_interval(pred, cv_true, cv_pred, 3, replicates=200, seed=rep)
            share = np.bincount(y, minlength=3) / len(y)
            covered.extend((low <= share) & (share <= high))
            w.append((high - low).mean())
            assert (low <= high).all() and np.isfinite(low).all()
        widths[n_lab] = np.mean(w)
    assert np.mean(covered) >= 0.85
    assert widths[50] < widths[5]


@pytest.mark.parametrize("soften_to", [None, 0.75])
def test_refit_interval_covers_the_truth_and_narrows_with_labels(soften_to):
    """Labelled cells balanced, folder 70/20/10: the refit bootstrap's interval holds each
    class's true share in most folders and is narrower with 10x the labels; also when each
    replicate softens its posteriors (`soften`, to about these classes' accuracy)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    means = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    truth = np.array([0.7, 0.2, 0.1])
    covered, widths = [], {}
    for n_lab in (5, 50):
        w = []
        for rep in range(12):
            y_lab = np.repeat(np.arange(3), n_lab)
            x_lab = means[y_lab] + rng.normal(size=(len(y_lab), 2))
            y = rng.choice(3, size=600, p=truth)
            x = means[y] + rng.normal(size=(len(y), 2))
            low, high = refit_interval(x_lab, y_lab, x, 3, lambda: LogisticRegression(
                class_weight="balanced"), replicates=60, inflate=1.5, seed=rep,
                soften_to=soften_to)
            share = np.bincount(y, minlength=3) / len(y)
            covered.extend((low <= share) & (share <= high))
            w.append((high - low).mean())
            assert (0 <= low).all() and (low <= high).all() and (high <= 1).all()
        widths[n_lab] = np.mean(w)
    assert np.mean(covered) >= 0.85
    assert widths[50] < 0.7 * widths[5]


def test_refit_interval_rejects_bad_arguments():
    from sklearn.linear_model import LogisticRegression

    x, y = np.zeros((4, 2)), np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="no cells"):
        refit_interval(x, y, np.zeros((0, 2)), 2, LogisticRegression)
    with pytest.raises(ValueError, match="inflate"):
        refit_interval(x, y, x, 2, LogisticRegression, inflate=0.5)


def test_temperature_undoes_known_overconfidence():
    y, post = gaussian_folder(np.array([0.25, 0.25, 0.25, 0.25]), n=4000, seed=2)
    sharp = temper(post, 0.5)  # posteriors squared and renormalised: overconfident
    np.testing.assert_allclose(sharp[0], post[0] ** 2 / (post[0] ** 2).sum())
    assert fit_temperature(sharp, y) == pytest.approx(2.0, rel=0.1)
    assert fit_temperature(post, y) == pytest.approx(1.0, rel=0.1)


def test_matching_temperature_finds_a_known_sharpening():
    """Calibrated posteriors sharpened 2x are softened back by 2 when matched to the calibrated
    posteriors' own mean confidence; never below 1, never above the cap."""
    _, post = gaussian_folder([1 / 3] * 3, seed=5)
    confidence = post.max(axis=1).mean()
    assert matching_temperature(temper(post, 0.5), confidence) == pytest.approx(2.0, abs=1e-3)
    assert matching_temperature(post, 1.0) == 1.0  # no more confident than that already
    assert matching_temperature(temper(post, 0.1), confidence, most=3.0) == 3.0


def test_softened_em_undoes_overconfidence_in_an_imbalanced_folder():
    """Posteriors sharpened 3x (p^3, as an overconfident classifier gives) hold EM near the
    labels' balance; softened to the exact posteriors' mean confidence they are the exact
    posteriors again, and EM on those recovers the true 70 / 20 / 10 mix."""
    y, post = gaussian_folder([0.7, 0.2, 0.1], seed=3)
    sharp = temper(post, 1 / 3)
    truth = np.bincount(y) / len(y)
    plain = em_priors(sharp)[0]
    soft = softened_em_priors(sharp, post.max(axis=1).mean(), tv=0.2, most=3.5)
    np.testing.assert_allclose(soft, em_priors(post)[0], atol=1e-3)
    assert np.abs(soft - truth).max() < 0.02 < np.abs(plain - truth).max()


def test_softened_em_keeps_what_needs_no_softening():
    """A folder that looks balanced keeps EM's first estimate; so do posteriors no more
    confident than the accuracy (a well-separated folder)."""
    y, post = gaussian_folder([0.36, 0.33, 0.31], seed=4)
    sharp = temper(post, 1 / 3)
    np.testing.assert_array_equal(softened_em_priors(sharp, 0.5, tv=0.2), em_priors(sharp)[0])
    _, post = gaussian_folder([0.8, 0.1, 0.1], seed=6)
    np.testing.assert_array_equal(softened_em_priors(post, 1.0), em_priors(post)[0])
