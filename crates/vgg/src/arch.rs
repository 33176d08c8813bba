//! The VGG architectures as data: five blocks of 3×3 convolutions (zero padding 1), each conv
//! followed by a ReLU, each block by a 2×2 stride-2 pooling (Simonyan & Zisserman, 2014).
//! VGG16 and VGG19 differ only in how many convs blocks 3–5 have.

use std::fmt;

/// Which VGG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// 13 convolutions: 2, 2, 3, 3, 3 per block.
    Vgg16,
    /// 16 convolutions: 2, 2, 4, 4, 4 per block.
    Vgg19,
}

/// Output channels of each block's convolutions.
const BLOCK_WIDTHS: [usize; 5] = [64, 128, 256, 512, 512];

impl Architecture {
    /// Parses the manifest's name, `"vgg16"` or `"vgg19"`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "vgg16" => Some(Self::Vgg16),
            "vgg19" => Some(Self::Vgg19),
            _ => None,
        }
    }

    /// The manifest's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vgg16 => "vgg16",
            Self::Vgg19 => "vgg19",
        }
    }

    /// Number of convolutions in each of the five blocks.
    pub fn convs_per_block(self) -> [usize; 5] {
        match self {
            Self::Vgg16 => [2, 2, 3, 3, 3],
            Self::Vgg19 => [2, 2, 4, 4, 4],
        }
    }

    /// Every convolution in forward order, with its weight shape.
    pub fn convs(self) -> Vec<ConvSpec> {
        let mut convs = Vec::new();
        let mut c_in = 3;
        for (b, (&n, &width)) in self.convs_per_block().iter().zip(&BLOCK_WIDTHS).enumerate() {
            for i in 1..=n {
                convs.push(ConvSpec {
                    block: b + 1,
                    index: i,
                    c_in,
                    c_out: width,
                });
                c_in = width;
            }
        }
        convs
    }

    /// Every layer in forward order: `conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, …`.
    pub fn layers(self) -> Vec<Layer> {
        let mut layers = Vec::new();
        let mut conv = 0;
        for (b, &n) in self.convs_per_block().iter().enumerate() {
            for i in 1..=n {
                layers.push(Layer::Conv {
                    block: b + 1,
                    index: i,
                    conv,
                });
                layers.push(Layer::Relu {
                    block: b + 1,
                    index: i,
                });
                conv += 1;
            }
            layers.push(Layer::Pool { block: b + 1 });
        }
        layers
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One convolution of the network: `conv{block}_{index}`, `c_in → c_out` channels, 3×3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Block number, 1–5.
    pub block: usize,
    /// Position in the block, from 1.
    pub index: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
}

impl ConvSpec {
    /// `conv{block}_{index}`.
    pub fn name(&self) -> String {
        format!("conv{}_{}", self.block, self.index)
    }

    /// The weight tensor's shape, `C_out×C_in×3×3` (PyTorch's OIHW order).
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.c_out, self.c_in, 3, 3]
    }
}

/// A layer whose output can be requested by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// `conv{block}_{index}`: the convolution's output, before its ReLU. `conv` is its position
    /// among all convolutions.
    Conv {
        block: usize,
        index: usize,
        conv: usize,
    },
    /// `relu{block}_{index}`: after the ReLU.
    Relu { block: usize, index: usize },
    /// `pool{block}`: after the block's pooling.
    Pool { block: usize },
}

impl Layer {
    /// The layer's conventional name.
    pub fn name(&self) -> String {
        match self {
            Layer::Conv { block, index, .. } => format!("conv{block}_{index}"),
            Layer::Relu { block, index } => format!("relu{block}_{index}"),
            Layer::Pool { block } => format!("pool{block}"),
        }
    }
}
