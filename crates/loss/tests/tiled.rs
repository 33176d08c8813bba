//! Exact tiled evaluation equals the untiled one — loss to 1e-5 relative, gradient to 1e-4 of
//! its largest entry — on the real VGG16, on odd sizes, with tiles smaller than the halo, tiles
//! that do not divide the image, and a single tile; and the tile cover is exact.

mod common;

use common::{assert_same_evaluation, image, vgg16};
use nst_loss::tiled::{tiles, Tile};
use nst_loss::{Layers, LossWeights, Objective};
use nst_tensor::ndarray::ArrayD;
use nst_vgg::Vgg;

/// The objective of the default layers for `content` and one style, tiled by `tile` (`None`: whole
/// images).
fn objective<'n>(
    vgg: &'n Vgg,
    content: &ArrayD<f32>,
    style: &ArrayD<f32>,
    weights: LossWeights,
    tile: Option<usize>,
) -> Objective<'n> {
    let styles = [style.clone()];
    Objective::with_tiles(
        vgg,
        content,
        &styles,
        &[1.0],
        Layers::default(),
        weights,
        tile,
    )
    .unwrap()
}

#[test]
fn tiled_evaluation_equals_the_untiled_one() {
    let vgg = vgg16();
    let weights = LossWeights {
        tv: 3.0,
        ..LossWeights::default_for(vgg.preprocessing())
    };
    let (h, w) = (97, 75);
    let content = image(h, w, 0.0);
    let style = image(61, 83, 1.0);
    let x = image(h, w, 2.0);
    // Evaluated whole, this tall image runs transposed (`tests/orientation.rs`); tiles never do.
    let whole = objective(&vgg, &content, &style, weights, None).evaluate(&x);
    let scale = whole.grad.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0 && whole.content > 0.0 && whole.style > 0.0);
    // 16 and 48 px are smaller than the 64 px halo; 48 and 80 do not divide 97×75; 128 is one tile.
    for side in [16, 48, 80, 128] {
        let tiled = objective(&vgg, &content, &style, weights, Some(side)).evaluate(&x);
        assert_same_evaluation(&tiled, &whole, &format!("tile {side}"));
    }
}

/// Every pixel is owned by exactly one tile, owned rectangles start on the pooling grid, and
/// windows contain their owned rectangle widened by the halo (clipped to the image).
#[test]
fn tiles_cover_the_image_exactly_once() {
    let geo = vgg16().tile_geometry(&Layers::default().style).unwrap();
    assert_eq!((geo.align, geo.halo), (16, 64));
    for (h, w, side) in [(97, 75, 16), (97, 75, 40), (33, 200, 1000), (16, 16, 16)] {
        let ts: Vec<Tile> = tiles(h, w, side, &geo);
        let mut count = vec![0u8; h * w];
        for t in &ts {
            let (o, win) = (t.owned, t.window);
            assert!(o.top % geo.align == 0 && o.left % geo.align == 0);
            assert_eq!(win.top, o.top.saturating_sub(geo.halo));
            assert_eq!(win.bottom, (o.bottom + geo.halo).min(h));
            assert_eq!(win.left, o.left.saturating_sub(geo.halo));
            assert_eq!(win.right, (o.right + geo.halo).min(w));
            for i in o.top..o.bottom {
                for j in o.left..o.right {
                    count[i * w + j] += 1;
                }
            }
        }
        assert!(count.iter().all(|&c| c == 1), "{h}×{w} by {side}");
    }
}

/// An evaluation asks its stop check before every layer and backward op — of every tile of both
/// passes, when tiled — and ends at the first yes with no result: an evaluation of a print can
/// outlast the grace period between a scheduler's SIGTERM and its SIGKILL.
#[test]
fn an_evaluation_stops_within_a_layer_of_being_told() {
    let vgg = vgg16();
    let weights = LossWeights::default_for(vgg.preprocessing());
    let (h, w) = (97, 75);
    let (content, style, x) = (image(h, w, 0.0), image(61, 83, 1.0), image(h, w, 2.0));
    let geo = vgg.tile_geometry(&Layers::default().style).unwrap();
    let asked = std::cell::Cell::new(0);
    // Says yes at its `at`-th question (never, for 0), counting them.
    let stop_at = |at: usize| {
        asked.set(0);
        let asked = &asked;
        move || {
            asked.set(asked.get() + 1);
            asked.get() == at
        }
    };
    for tile in [Some(48), None] {
        let objective = objective(&vgg, &content, &style, weights, tile);
        assert!(objective.evaluate_unless(&x, &stop_at(0)).is_some());
        let questions = asked.get();
        // A forward pass to relu5_1 runs 26 layers: dozens of questions per tile and pass.
        let passes = 2 * tile.map_or(1, |side| tiles(h, w, side, &geo).len());
        assert!(
            questions >= 26 * passes,
            "{tile:?}: asked {questions} times in {passes} tile passes"
        );
        for at in [1, 2, questions / 2, questions] {
            assert!(
                objective.evaluate_unless(&x, &stop_at(at)).is_none(),
                "{tile:?}: stop at {at}"
            );
            assert_eq!(asked.get(), at, "{tile:?}: asked again after the yes");
        }
    }
}
