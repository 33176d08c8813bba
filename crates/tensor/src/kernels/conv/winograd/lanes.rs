//! [`Lanes`]: one value of [`LANES`] neighbouring tiles — the unit both transforms compute in,
//! so that each of their operations is one vector instruction.

/// Tiles transformed together: one AVX2 register of f32.
pub(super) const LANES: usize = 8;

/// One value of [`LANES`] neighbouring tiles, added and scaled lane by lane: with the loops
/// inlined the compiler turns each operation into one vector instruction (8-wide under AVX2,
/// two 4-wide ones on the SSE2 baseline).
#[derive(Clone, Copy)]
pub(super) struct Lanes(pub(super) [f32; LANES]);

impl Lanes {
    /// The first [`LANES`] values of `s`, zero-padded if `s` is shorter.
    #[inline(always)]
    pub(super) fn load(s: &[f32]) -> Lanes {
        match s.first_chunk::<LANES>() {
            Some(full) => Lanes(*full),
            None => {
                let mut l = [0.0; LANES];
                l[..s.len()].copy_from_slice(s);
                Lanes(l)
            }
        }
    }

    /// Writes the first `min(LANES, d.len())` lanes into `d`.
    #[inline(always)]
    pub(super) fn store(self, d: &mut [f32]) {
        match d.first_chunk_mut::<LANES>() {
            Some(full) => *full = self.0,
            None => {
                let k = d.len();
                d.copy_from_slice(&self.0[..k]);
            }
        }
    }

    /// `s[i..i + LANES]`, which must be in bounds: the hot loops' load, whose length the
    /// compiler knows (no partial path beside it, so nothing is kept in memory for one).
    #[inline(always)]
    pub(super) fn at(s: &[f32], i: usize) -> Lanes {
        Lanes(s[i..i + LANES].try_into().expect("LANES values"))
    }

    /// Writes all lanes into `d[i..i + LANES]`, which must be in bounds (see [`Lanes::at`]).
    #[inline(always)]
    pub(super) fn put(self, d: &mut [f32], i: usize) {
        d[i..i + LANES].copy_from_slice(&self.0);
    }
}

impl Lanes {
    /// `f` applied lane by lane.
    #[inline(always)]
    pub(super) fn map(self, f: impl Fn(f32) -> f32) -> Lanes {
        let mut r = self.0;
        for a in r.iter_mut() {
            *a = f(*a);
        }
        Lanes(r)
    }

    /// `f` applied to each pair of lanes of `self` and `o`.
    #[inline(always)]
    pub(super) fn zip(self, o: Lanes, f: impl Fn(f32, f32) -> f32) -> Lanes {
        let mut r = self.0;
        for (a, b) in r.iter_mut().zip(o.0) {
            *a = f(*a, b);
        }
        Lanes(r)
    }

    /// `max(v, 0)` lane by lane (NaN becomes 0, as in the separate ReLU).
    #[inline(always)]
    pub(super) fn relu(self) -> Lanes {
        self.map(|a| a.max(0.0))
    }
}

impl std::ops::Add for Lanes {
    type Output = Lanes;
    #[inline(always)]
    fn add(self, o: Lanes) -> Lanes {
        self.zip(o, |a, b| a + b)
    }
}

impl std::ops::Sub for Lanes {
    type Output = Lanes;
    #[inline(always)]
    fn sub(self, o: Lanes) -> Lanes {
        self.zip(o, |a, b| a - b)
    }
}

impl std::ops::Mul<f32> for Lanes {
    type Output = Lanes;
    #[inline(always)]
    fn mul(self, k: f32) -> Lanes {
        self.map(|a| a * k)
    }
}

/// Where the block of [`LANES`] tiles at `t` of a row of `tc` starts: at `t`, except that a
/// row's last, partial block is done whole, overlapping the block before it (the same values
/// again), so that its loads and stores are not variable-length copies (calls to `memcpy`). A
/// row shorter than a block keeps its one partial block.
#[inline(always)]
pub(super) fn block_start(t: usize, tc: usize) -> usize {
    if t + LANES > tc && tc >= LANES {
        tc - LANES
    } else {
        t
    }
}
