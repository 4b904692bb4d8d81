//! The digit classifier on real MNIST test digits.

mod common;

use std::time::Instant;

use image::RgbImage;
use jielong_image::DigitClassifier;

#[test]
fn recognises_real_test_digits() {
    let data = common::mnist();
    let start = Instant::now();
    let knn = DigitClassifier::from_dataset(data).unwrap();
    let built = start.elapsed();
    // The first 300 test digits (about 96% of the whole test set is recognised).
    let sample: Vec<_> = data.heldout.iter().take(300).collect();
    let images: Vec<RgbImage> = sample.iter().map(|l| l.image.clone()).collect();
    let wanted: Vec<usize> = sample.iter().map(|l| l.label.unwrap()).collect();
    let start = Instant::now();
    let acc = knn.evaluate(&images, &wanted).unwrap();
    let took = start.elapsed();
    eprintln!(
        "kNN: built on 60,000 in {built:.2?}, classified {} in {took:.2?}: {:.1}% ({:?})",
        acc.total,
        100.0 * acc.overall(),
        acc.per_class
            .iter()
            .map(|c| (c.class.clone(), c.correct, c.total))
            .collect::<Vec<_>>()
    );
    assert_eq!(acc.total, 300);
    assert!(acc.overall() > 0.90, "{acc:?}");
    assert!(took.as_secs_f64() < 30.0, "classifying took {took:?}");
    assert_eq!(acc.per_class.len(), 10);
    assert_eq!(acc.per_class.iter().map(|c| c.total).sum::<usize>(), 300);
    // Each class well recognised, not only on average.
    for c in &acc.per_class {
        assert!(c.accuracy().unwrap() > 0.7, "{c:?}");
    }
    // A training digit is its own nearest neighbour at distance 0: classified as labelled.
    let first = &data.train[0];
    assert_eq!(knn.classify(&first.image).unwrap(), first.label.unwrap());
}

#[test]
fn bad_inputs_are_errors() {
    let data = common::mnist();
    let knn = DigitClassifier::train(&data.train[..100], &data.classes).unwrap();
    let err = knn.classify(&RgbImage::new(8, 8)).unwrap_err().to_string();
    assert!(err.contains("28x28") && err.contains("8x8"), "{err}");
    assert!(knn.evaluate(&[RgbImage::new(28, 28)], &[]).is_err());
    assert!(knn.evaluate(&[RgbImage::new(28, 28)], &[10]).is_err());
    let mut unlabelled = data.train[..3].to_vec();
    unlabelled[1].label = None;
    assert!(DigitClassifier::train(&unlabelled, &data.classes).is_err());
    assert!(DigitClassifier::train(&[], &data.classes).is_err());
}
