//! The contact sheet of a run (`--progress-grid FILE.png --grid RxC`): the image at evenly
//! spaced evaluations, in rows and columns like the figures of the original paper and the
//! tutorials — the first cell the initial image, the last the output, each labelled with the
//! number of evaluations made before it.
//!
//! For a run of `N` evaluations and `n = R·C` cells, cell `k` shows the image after
//! `t_k = round(k·N/(n−1))` evaluations: the initial image for `k = 0`, the image evaluated at
//! evaluation `t_k + 1` in between, and the output for the last cell. Only thumbnails are kept
//! (longer side [`CELL_SIDE`]), so the sheet costs little memory however long the run.

use crate::image_io::{resize_exact, variable_to_image};
use image::{Rgb, Rgb32FImage};
use nst_tensor::ndarray::ArrayD;

/// Longer side of a cell, in pixels.
pub const CELL_SIDE: u32 = 256;
/// Space between cells and around the sheet, in pixels.
const GUTTER: u32 = 6;
/// Scale of the label font (each font pixel becomes a square of this side).
const LABEL_SCALE: u32 = 3;

/// Collects the thumbnails of a run and lays them out (see the module documentation).
pub struct ContactSheet {
    rows: u32,
    cols: u32,
    cell: (u32, u32),
    /// `t_k` of each cell.
    labels: Vec<usize>,
    /// The thumbnail of each cell, once seen.
    cells: Vec<Option<Rgb32FImage>>,
}

impl ContactSheet {
    /// A sheet of `rows × cols` cells for a run of `evals` evaluations whose output is
    /// `width × height` (cells keep its aspect ratio).
    pub fn new(rows: u32, cols: u32, evals: usize, (width, height): (u32, u32)) -> Self {
        let n = (rows * cols) as usize;
        let labels = (0..n)
            .map(|k| {
                if n == 1 {
                    evals
                } else {
                    ((k * evals) as f64 / (n - 1) as f64).round() as usize
                }
            })
            .collect();
        let scale = CELL_SIDE as f64 / width.max(height).max(1) as f64;
        let cell = (
            ((width as f64 * scale).round() as u32).max(1),
            ((height as f64 * scale).round() as u32).max(1),
        );
        ContactSheet {
            rows,
            cols,
            cell,
            labels,
            cells: vec![None; n],
        }
    }

    /// The cells, other than the last (the output's), still waiting for the image evaluated
    /// at evaluation `eval` (1-based).
    fn waiting_for(&self, eval: usize) -> Vec<usize> {
        let last = self.cells.len() - 1;
        (0..last)
            .filter(|&k| self.labels[k] + 1 == eval && self.cells[k].is_none())
            .collect()
    }

    /// Whether the image evaluated at evaluation `eval` (1-based) belongs in a cell.
    pub fn wants(&self, eval: usize) -> bool {
        !self.waiting_for(eval).is_empty()
    }

    /// Keeps a thumbnail of `x` (1×3×H×W, any stage's size) if the image evaluated at
    /// evaluation `eval` (1-based) belongs in a cell other than the last.
    pub fn observe(&mut self, eval: usize, x: &ArrayD<f32>) {
        let cells = self.waiting_for(eval);
        if !cells.is_empty() {
            let thumb = self.thumbnail(x);
            for k in cells {
                self.cells[k] = Some(thumb.clone());
            }
        }
    }

    /// The sheet, with `output` (the written image, 1×3×H×W) in the last cell after `evals`
    /// evaluations. Cells whose evaluation never came (a run stopped early) stay empty.
    pub fn finish(mut self, output: &ArrayD<f32>, evals: usize) -> Rgb32FImage {
        let last = self.cells.len() - 1;
        self.cells[last] = Some(self.thumbnail(output));
        self.labels[last] = evals;
        let (cw, ch) = self.cell;
        let width = self.cols * cw + (self.cols + 1) * GUTTER;
        let height = self.rows * ch + (self.rows + 1) * GUTTER;
        let mut sheet = Rgb32FImage::from_pixel(width, height, Rgb([0.12, 0.12, 0.12]));
        for (k, cell) in self.cells.iter().enumerate() {
            let (r, c) = (k as u32 / self.cols, k as u32 % self.cols);
            let (x0, y0) = (GUTTER + c * (cw + GUTTER), GUTTER + r * (ch + GUTTER));
            if let Some(img) = cell {
                image::imageops::replace(&mut sheet, img, x0 as i64, y0 as i64);
                draw_label(&mut sheet, x0, y0, self.labels[k]);
            }
        }
        sheet
    }

    fn thumbnail(&self, x: &ArrayD<f32>) -> Rgb32FImage {
        let mut img = variable_to_image(x);
        img.pixels_mut()
            .for_each(|p| p.0 = p.0.map(|v| v.clamp(0.0, 1.0)));
        resize_exact(&img, self.cell.0, self.cell.1)
    }
}

/// Digits 0–9 in a 3×5 pixel font, one row per entry, the top bit of each 3-bit row leftmost.
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// Writes `number` in white on a black box at the top-left corner `(x0, y0)` of a cell.
fn draw_label(sheet: &mut Rgb32FImage, x0: u32, y0: u32, number: usize) {
    let text = number.to_string();
    let s = LABEL_SCALE;
    let (pad, advance) = (s, 4 * s);
    let box_w = pad * 2 + advance * text.len() as u32 - s;
    let box_h = pad * 2 + 5 * s;
    let mut put = |x: u32, y: u32, v: f32| {
        if x < sheet.width() && y < sheet.height() {
            sheet.put_pixel(x, y, Rgb([v, v, v]));
        }
    };
    for y in 0..box_h {
        for x in 0..box_w {
            put(x0 + x, y0 + y, 0.0);
        }
    }
    for (i, d) in text.bytes().enumerate() {
        let glyph = DIGITS[(d - b'0') as usize];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3 {
                if bits >> (2 - col) & 1 == 1 {
                    for dy in 0..s {
                        for dx in 0..s {
                            let x = x0 + pad + i as u32 * advance + col * s + dx;
                            put(x, y0 + pad + row as u32 * s + dy, 1.0);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: f32, h: usize, w: usize) -> ArrayD<f32> {
        ArrayD::from_elem(vec![1, 3, h, w], v)
    }

    #[test]
    fn cells_are_evenly_spaced_from_the_start_to_the_output() {
        let s = ContactSheet::new(2, 5, 300, (512, 384));
        assert_eq!(s.labels, vec![0, 33, 67, 100, 133, 167, 200, 233, 267, 300]);
        assert_eq!(s.cell, (256, 192));
    }

    #[test]
    fn each_cell_shows_the_image_of_its_evaluation() {
        // Evaluation e sees an image of grey level e/10; cells 0..3 want evaluations 1, 4, 7.
        let mut s = ContactSheet::new(1, 4, 9, (40, 20));
        for e in 1..=9 {
            s.observe(e, &flat(e as f32 / 10.0, 10, 20));
        }
        let sheet = s.finish(&flat(1.0, 20, 40), 9);
        let (cw, ch) = (CELL_SIDE, CELL_SIDE / 2);
        assert_eq!(sheet.dimensions(), (4 * cw + 5 * GUTTER, ch + 2 * GUTTER));
        // Sample each cell's bottom-right area, away from the label.
        for (k, want) in [0.1, 0.4, 0.7, 1.0].into_iter().enumerate() {
            let x = GUTTER + k as u32 * (cw + GUTTER) + cw - 5;
            let got = sheet.get_pixel(x, GUTTER + ch - 5).0[0];
            assert!((got - want).abs() < 1e-3, "cell {k}: {got} vs {want}");
        }
    }

    #[test]
    fn labels_are_drawn_in_white_on_black() {
        let mut s = ContactSheet::new(1, 2, 8, (64, 64));
        s.observe(1, &flat(0.5, 64, 64));
        let sheet = s.finish(&flat(0.5, 64, 64), 8);
        // The label box of cell 0 is black where "0" has its hole and white on its stroke.
        let (x0, y0, sc) = (GUTTER, GUTTER, LABEL_SCALE);
        let at = |col: u32, row: u32| sheet.get_pixel(x0 + sc + col * sc, y0 + sc + row * sc).0[0];
        assert_eq!(at(0, 0), 1.0);
        assert_eq!(at(1, 2), 0.0);
        assert_eq!(at(2, 4), 1.0);
    }

    #[test]
    fn a_run_stopped_early_leaves_its_later_cells_empty() {
        let mut s = ContactSheet::new(1, 3, 100, (32, 32));
        s.observe(1, &flat(0.5, 32, 32));
        let sheet = s.finish(&flat(0.5, 32, 32), 20);
        let middle = sheet
            .get_pixel(GUTTER + CELL_SIDE + GUTTER + 100, GUTTER + 100)
            .0[0];
        assert!(
            (middle - 0.12).abs() < 1e-6,
            "the background shows: {middle}"
        );
    }
}
