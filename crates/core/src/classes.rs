//! Class labels and checks of class-conditional samples: the order classes are listed in, a
//! tally of how many samples a classifier recognised as the class asked for, and the parallel
//! map the classifiers (and other independent per-item work) run on.

use std::collections::BTreeSet;

use anyhow::{Result, bail};

/// Distinct labels in a stable order: numbers in numeric order first, then names
/// alphabetically ("2" before "10" before "cat").
pub fn sorted_classes<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<&str> = labels.into_iter().collect();
    let mut classes: Vec<String> = set.into_iter().map(str::to_owned).collect();
    classes.sort_by(|a, b| match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y).then(a.cmp(b)),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    });
    classes
}

/// How many samples of one class were recognised as that class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassAccuracy {
    /// The class label, as listed by [`sorted_classes`].
    pub class: String,
    /// Samples of this class the classifier recognised as this class.
    pub correct: usize,
    /// Samples generated for this class, unclassified ones included.
    pub total: usize,
    /// Samples the classifier could not judge at all (a silent clip): in `total`, never correct.
    pub unclassified: usize,
}

impl ClassAccuracy {
    /// The fraction recognised; `None` when no sample of this class was asked for.
    pub fn accuracy(&self) -> Option<f64> {
        (self.total > 0).then(|| self.correct as f64 / self.total as f64)
    }
}

/// Per-class and overall accuracy of samples against the classes they were drawn for.
#[derive(Clone, Debug, PartialEq)]
pub struct Accuracy {
    /// One tally per class, in the order of the `classes` given to [`Accuracy::tally`].
    pub per_class: Vec<ClassAccuracy>,
    /// Samples recognised as the class they were drawn for, over all classes.
    pub correct: usize,
    /// Samples checked, over all classes.
    pub total: usize,
    /// `confusion[wanted][recognised]` (unclassified samples are in no column).
    pub confusion: Vec<Vec<usize>>,
}

impl Accuracy {
    /// Tallies `got` (the recognised class of each sample, `None` when unclassifiable) against
    /// `wanted`; both are indices into `classes`.
    pub fn tally(classes: &[String], wanted: &[usize], got: &[Option<usize>]) -> Result<Self> {
        if wanted.len() != got.len() {
            bail!("{} samples but {} wanted classes", got.len(), wanted.len());
        }
        let k = classes.len();
        if let Some(&bad) = wanted.iter().chain(got.iter().flatten()).find(|&&c| c >= k) {
            bail!("class {bad} does not exist (the classifier knows {k})");
        }
        let mut per_class: Vec<ClassAccuracy> = classes
            .iter()
            .map(|c| ClassAccuracy {
                class: c.clone(),
                correct: 0,
                total: 0,
                unclassified: 0,
            })
            .collect();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&w, g) in wanted.iter().zip(got) {
            per_class[w].total += 1;
            match *g {
                Some(g) => {
                    confusion[w][g] += 1;
                    per_class[w].correct += (w == g) as usize;
                }
                None => per_class[w].unclassified += 1,
            }
        }
        let correct = per_class.iter().map(|c| c.correct).sum();
        Ok(Self {
            per_class,
            correct,
            total: got.len(),
            confusion,
        })
    }

    /// The fraction of all samples recognised as their class; 0 when there were none.
    pub fn overall(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }
}

/// `f` applied to every item on all cores, results in the items' order; the first error wins.
/// Each item is independent, so the answer does not depend on how the work is split.
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(usize, &T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let threads = crate::cores();
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    let parts: Vec<Result<Vec<R>>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                s.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(j, x)| f(c * chunk + j, x))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_numerically_before_names() {
        assert_eq!(
            sorted_classes(["cat", "10", "2", "ant", "2"]),
            ["2", "10", "ant", "cat"]
        );
    }

    #[test]
    fn tally_counts_correct_unclassified_and_confusions() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let acc =
            Accuracy::tally(&classes, &[0, 0, 1, 1], &[Some(0), Some(1), None, Some(1)]).unwrap();
        assert_eq!((acc.correct, acc.total), (2, 4));
        assert_eq!(acc.per_class[1].unclassified, 1);
        assert_eq!(acc.confusion, vec![vec![1, 1], vec![0, 1]]);
        assert_eq!(acc.per_class[0].accuracy(), Some(0.5));
        assert!(Accuracy::tally(&classes, &[2], &[Some(0)]).is_err());
        assert!(Accuracy::tally(&classes, &[0, 1], &[Some(0)]).is_err());
    }

    #[test]
    fn par_map_keeps_order_and_reports_errors() {
        let items: Vec<usize> = (0..101).collect();
        let out = par_map(&items, |i, &x| Ok((i, x * 2))).unwrap();
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, &(j, y))| i == j && y == 2 * i)
        );
        let err = par_map(
            &items,
            |_, &x| if x == 77 { bail!("item 77") } else { Ok(x) },
        )
        .unwrap_err();
        assert!(err.to_string().contains("77"));
    }
}
