//! Weighted k-means (k-means++ seeding, then Lloyd iterations), shared by the image palette, the
//! image patch codebook and the audio frame codebook.
//!
//! Points are deduplicated by the callers and carry a weight (how often they occur), which makes
//! fitting on a whole dataset cheap: MNIST has 47 million pixels but only 256 grey values.
//! Everything is a pure function of the points and the seed: the sums run in a fixed order and
//! the parallel part (finding each point's nearest centre) does not depend on thread timing.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Points of `dim` coordinates stored one after another, each with a positive weight.
pub struct Points {
    /// Coordinates per point.
    pub dim: usize,
    /// `len() * dim` coordinates, point after point.
    pub coords: Vec<f32>,
    /// One positive weight per point (how often it occurs).
    pub weights: Vec<f64>,
}

impl Points {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    fn point(&self, i: usize) -> &[f32] {
        &self.coords[i * self.dim..(i + 1) * self.dim]
    }
}

/// Most Lloyd iterations run; fitting stops earlier once no point changes its centre.
const MAX_ITERATIONS: usize = 40;

/// Squared Euclidean distance.
fn distance2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Index and squared distance of the centre nearest to `p` (the first of equals wins).
pub fn nearest(p: &[f32], centres: &[f32], dim: usize) -> (usize, f32) {
    let mut best = (0, f32::INFINITY);
    for (i, c) in centres.chunks_exact(dim).enumerate() {
        let d = distance2(p, c);
        if d < best.1 {
            best = (i, d);
        }
    }
    best
}

/// Nearest centre of every point, on all cores (each point is independent, so the answer does
/// not depend on how the work is split).
fn assign(points: &Points, centres: &[f32]) -> Vec<(usize, f32)> {
    let n = points.len();
    let threads = crate::cores().min(n.max(1));
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let mut out = vec![(0, 0.0); n];
    std::thread::scope(|s| {
        for (t, part) in out.chunks_mut(chunk).enumerate() {
            s.spawn(move || {
                for (j, slot) in part.iter_mut().enumerate() {
                    *slot = nearest(points.point(t * chunk + j), centres, points.dim);
                }
            });
        }
    });
    out
}

/// Fits at most `k` centres to the points. Fewer come back only when there are fewer distinct
/// points than `k`. Returns the centres stored one after another.
pub fn fit(points: &Points, k: usize, seed: u64) -> Vec<f32> {
    let dim = points.dim;
    let n = points.len();
    if n == 0 || k == 0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    // k-means++: the first centre by weight, each next one with probability proportional to
    // weight x squared distance to the nearest centre chosen so far.
    let mut centres: Vec<f32> = Vec::with_capacity(k * dim);
    let total: f64 = points.weights.iter().sum();
    let first = pick(&points.weights, total, &mut rng);
    centres.extend_from_slice(points.point(first));
    let mut best: Vec<f32> = (0..n)
        .map(|i| distance2(points.point(i), &centres[..dim]))
        .collect();
    while centres.len() / dim < k {
        let scores: Vec<f64> = best
            .iter()
            .zip(&points.weights)
            .map(|(&d, &w)| d as f64 * w)
            .collect();
        let sum: f64 = scores.iter().sum();
        if sum <= 0.0 {
            break; // every distinct point is already a centre
        }
        let next = pick(&scores, sum, &mut rng);
        let c = points.point(next).to_vec();
        for (i, b) in best.iter_mut().enumerate() {
            *b = b.min(distance2(points.point(i), &c));
        }
        centres.extend_from_slice(&c);
    }
    let k = centres.len() / dim;

    // Lloyd: move each centre to the weighted mean of its points until nothing moves.
    let mut previous: Vec<usize> = Vec::new();
    for _ in 0..MAX_ITERATIONS {
        let nearest = assign(points, &centres);
        let owners: Vec<usize> = nearest.iter().map(|&(c, _)| c).collect();
        if owners == previous {
            break;
        }
        let mut sums = vec![0f64; k * dim];
        let mut mass = vec![0f64; k];
        for (i, &c) in owners.iter().enumerate() {
            let w = points.weights[i];
            mass[c] += w;
            for (s, &x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(points.point(i)) {
                *s += w * x as f64;
            }
        }
        // An empty centre takes the point that is worst served now, so no code goes unused.
        let mut worst: Vec<usize> = Vec::new();
        if mass.contains(&0.0) {
            worst = (0..n).collect();
            worst.sort_by(|&a, &b| {
                let sa = nearest[a].1 as f64 * points.weights[a];
                let sb = nearest[b].1 as f64 * points.weights[b];
                sb.total_cmp(&sa).then(a.cmp(&b))
            });
        }
        let mut spare = worst.into_iter();
        for c in 0..k {
            let slot = &mut centres[c * dim..(c + 1) * dim];
            if mass[c] > 0.0 {
                for (x, s) in slot.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *x = (s / mass[c]) as f32;
                }
            } else if let Some(p) = spare.next() {
                slot.copy_from_slice(points.point(p));
            }
        }
        previous = owners;
    }
    centres
}

/// Index drawn with probability proportional to `scores` (which sum to `total` > 0).
fn pick(scores: &[f64], total: f64, rng: &mut ChaCha8Rng) -> usize {
    let mut target = rng.gen_range(0.0..total);
    for (i, &s) in scores.iter().enumerate() {
        if target < s {
            return i;
        }
        target -= s;
    }
    // Rounding left a sliver past the end: the last point with any score.
    scores.iter().rposition(|&s| s > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_well_separated_clusters_and_is_deterministic() {
        let mut coords = Vec::new();
        for c in [0.0f32, 100.0, 200.0] {
            for d in 0..5 {
                coords.extend([c + d as f32, c - d as f32]);
            }
        }
        let points = Points {
            dim: 2,
            weights: vec![1.0; 15],
            coords,
        };
        let centres = fit(&points, 3, 7);
        assert_eq!(centres, fit(&points, 3, 7));
        let mut xs: Vec<f32> = centres.chunks(2).map(|c| c[0]).collect();
        xs.sort_by(f32::total_cmp);
        assert_eq!(xs, vec![2.0, 102.0, 202.0]);
    }

    #[test]
    fn never_more_centres_than_distinct_points() {
        let points = Points {
            dim: 1,
            coords: vec![1.0, 5.0],
            weights: vec![3.0, 1.0],
        };
        assert_eq!(fit(&points, 8, 0).len(), 2);
    }
}
