//! Rich displays: tensors as text and HTML, plots as SVG, images as PNG.
//!
//! Tensors are shown with their shape, dtype and device, and large ones are
//! elided (first and last items of each axis) so a display never floods a
//! notebook. Everything here produces `MediaType` values and knows nothing of
//! sockets.

use base64::Engine as _;
use candle_core::{DType, Tensor};
use jupyter_protocol::MediaType;

use crate::device::device_name;

/// Items shown at each end of an elided axis.
const EDGE: usize = 3;
/// Axes longer than this are elided.
const MAX_AXIS: usize = 8;

/// The one-line summary: `Tensor[2, 3] f32 cpu`.
pub fn tensor_summary(t: &Tensor) -> String {
    format!(
        "Tensor{:?} {} {}",
        t.dims(),
        dtype_name(t.dtype()),
        device_name(t.device())
    )
}

pub fn dtype_name(d: DType) -> &'static str {
    d.as_str()
}

/// text/plain and text/html for a tensor.
pub fn tensor_media(t: &Tensor) -> Vec<MediaType> {
    let values = match tensor_values(t) {
        Ok(v) => v,
        Err(e) => {
            return vec![MediaType::Plain(format!(
                "{} <unreadable: {e}>",
                tensor_summary(t)
            ))];
        }
    };
    let text = format!("{}\n{}", render_text(&values, t.dims()), tensor_summary(t));
    let html = format!(
        "<div class=\"academy-tensor\"><div style=\"font-family:monospace;color:#555\">{}</div>{}</div>",
        html_escape(&tensor_summary(t)),
        render_html(&values, t.dims())
    );
    vec![MediaType::Plain(text), MediaType::Html(html)]
}

/// The tensor's values as f64, row-major, after moving them to the CPU.
/// Only the items that will be shown are read for large tensors.
fn tensor_values(t: &Tensor) -> candle_core::Result<Vec<f64>> {
    let t = t.to_device(&candle_core::Device::Cpu)?;
    let t = if t.dtype() == DType::F64 {
        t
    } else {
        t.to_dtype(DType::F64)?
    };
    if t.elem_count() > 100_000 {
        // Elide first so we never copy a huge tensor to show 36 numbers.
        let mut t = t;
        for dim in 0..t.rank() {
            let n = t.dim(dim)?;
            if n > MAX_AXIS {
                let head = t.narrow(dim, 0, EDGE)?;
                let tail = t.narrow(dim, n - EDGE, EDGE)?;
                t = Tensor::cat(&[head, tail], dim)?;
            }
        }
        return t.flatten_all()?.to_vec1::<f64>();
    }
    t.flatten_all()?.to_vec1::<f64>()
}

/// Which indices of an axis of length `n` are shown; `None` marks the gap.
fn shown(n: usize) -> Vec<Option<usize>> {
    if n <= MAX_AXIS {
        (0..n).map(Some).collect()
    } else {
        let mut v: Vec<Option<usize>> = (0..EDGE).map(Some).collect();
        v.push(None);
        v.extend((n - EDGE..n).map(Some));
        v
    }
}

/// Maps a logical index to the position in `values` (which may already
/// have been elided when the tensor was large).
fn strides(dims: &[usize], elided: bool) -> (Vec<usize>, Vec<usize>) {
    let stored: Vec<usize> = dims
        .iter()
        .map(|&n| if elided && n > MAX_AXIS { 2 * EDGE } else { n })
        .collect();
    let mut st = vec![1; stored.len()];
    for i in (0..stored.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * stored[i + 1];
    }
    (stored, st)
}

fn position(index: usize, n: usize, stored_n: usize) -> usize {
    if stored_n < n && index >= n - EDGE {
        index - (n - stored_n)
    } else {
        index
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 1e4 || (v != 0.0 && v.abs() < 1e-3) {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

fn render_text(values: &[f64], dims: &[usize]) -> String {
    let elided = values.len() < dims.iter().product::<usize>();
    let (stored, st) = strides(dims, elided);
    fn go(
        values: &[f64],
        dims: &[usize],
        stored: &[usize],
        st: &[usize],
        depth: usize,
        offset: usize,
        out: &mut String,
    ) {
        if dims.is_empty() {
            out.push_str(&fmt_num(values.get(offset).copied().unwrap_or(f64::NAN)));
            return;
        }
        out.push('[');
        for (k, idx) in shown(dims[0]).into_iter().enumerate() {
            if k > 0 {
                out.push_str(if dims.len() > 1 { ",\n" } else { ", " });
                if dims.len() > 1 {
                    out.push_str(&" ".repeat(depth + 1));
                }
            }
            match idx {
                None => out.push_str("..."),
                Some(i) => {
                    let p = position(i, dims[0], stored[0]);
                    go(
                        values,
                        &dims[1..],
                        &stored[1..],
                        &st[1..],
                        depth + 1,
                        offset + p * st[0],
                        out,
                    )
                }
            }
        }
        out.push(']');
    }
    let mut out = String::new();
    go(values, dims, &stored, &st, 0, 0, &mut out);
    out
}

fn render_html(values: &[f64], dims: &[usize]) -> String {
    let elided = values.len() < dims.iter().product::<usize>();
    let (stored, st) = strides(dims, elided);
    let cell = |s: &str| format!("<td style=\"text-align:right;padding:0 6px\">{s}</td>");
    match dims.len() {
        0 => format!(
            "<pre>{}</pre>",
            fmt_num(values.first().copied().unwrap_or(f64::NAN))
        ),
        1 | 2 => {
            let (rows, cols) = if dims.len() == 1 {
                (1, dims[0])
            } else {
                (dims[0], dims[1])
            };
            let (srows, scols) = if dims.len() == 1 {
                (1, stored[0])
            } else {
                (stored[0], stored[1])
            };
            let (rs, cs) = if dims.len() == 1 {
                (0, st[0])
            } else {
                (st[0], st[1])
            };
            let mut html =
                String::from("<table style=\"font-family:monospace;border-collapse:collapse\">");
            for r in shown(rows) {
                html.push_str("<tr>");
                for c in shown(cols) {
                    match (r, c) {
                        (Some(r), Some(c)) => {
                            let p = position(r, rows, srows) * rs + position(c, cols, scols) * cs;
                            html.push_str(&cell(&fmt_num(
                                values.get(p).copied().unwrap_or(f64::NAN),
                            )));
                        }
                        (None, _) => html.push_str(&cell("⋮")),
                        (_, None) => html.push_str(&cell("…")),
                    }
                }
                html.push_str("</tr>");
            }
            html.push_str("</table>");
            html
        }
        _ => format!("<pre>{}</pre>", html_escape(&render_text(values, dims))),
    }
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Encodes a row-major grayscale or RGB image as a base64 PNG for `image/png`.
pub fn png_base64(width: u32, height: u32, channels: u8, pixels: &[u8]) -> Result<String, String> {
    let color = match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        n => return Err(format!("an image needs 1, 3 or 4 channels, not {n}")),
    };
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, width, height);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        w.write_image_data(pixels).map_err(|e| e.to_string())?;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// One named series of a line chart.
pub struct Series {
    pub name: String,
    pub xs: Vec<f64>,
    pub ys: Vec<f64>,
}

/// Draws a line chart as SVG (plotters); the loss curve of a training loop.
pub fn line_chart_svg(
    title: &str,
    series: &[Series],
    width: u32,
    height: u32,
) -> Result<String, String> {
    use plotters::prelude::*;
    let finite = |v: &f64| v.is_finite();
    let xs = series
        .iter()
        .flat_map(|s| s.xs.iter().copied())
        .filter(finite);
    let ys = series
        .iter()
        .flat_map(|s| s.ys.iter().copied())
        .filter(finite);
    let (x0, x1) = min_max(xs).ok_or("nothing to plot")?;
    let (y0, y1) = min_max(ys).ok_or("nothing to plot")?;
    let pad = |a: f64, b: f64| {
        if (b - a).abs() < 1e-12 {
            (a - 1.0, b + 1.0)
        } else {
            (a, b + (b - a) * 0.05)
        }
    };
    let (x0, x1) = pad(x0, x1);
    let (y0, y1) = pad(y0, y1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().draw().map_err(|e| e.to_string())?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> =
                s.xs.iter()
                    .copied()
                    .zip(s.ys.iter().copied())
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn min_max(it: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    it.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((a, b)) => Some((a.min(v), b.max(v))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn small_tensor_shows_every_value_with_shape_dtype_device() {
        let t = Tensor::new(&[[1f32, 2.], [3., 4.5]], &Device::Cpu).unwrap();
        let media = tensor_media(&t);
        let MediaType::Plain(text) = &media[0] else {
            panic!()
        };
        assert!(text.contains("[[1, 2],\n [3, 4.5000]]"), "{text}");
        assert!(text.contains("Tensor[2, 2] f32 cpu"), "{text}");
        let MediaType::Html(html) = &media[1] else {
            panic!()
        };
        assert!(html.contains("4.5000") && html.contains("Tensor[2, 2] f32 cpu"));
    }

    #[test]
    fn large_tensor_is_elided_at_both_ends() {
        let t = Tensor::arange(0f32, 1_000_000., &Device::Cpu)
            .unwrap()
            .reshape((1000, 1000))
            .unwrap();
        let MediaType::Plain(text) = &tensor_media(&t)[0] else {
            panic!()
        };
        assert!(text.starts_with("[[0, 1, 2, ..., 997, 998, 999]"), "{text}");
        assert!(text.contains("999997, 999998, 999999]]"), "{text}");
        assert!(text.len() < 400, "{}", text.len());
    }

    #[test]
    fn png_of_a_gradient_decodes_back() {
        let pixels: Vec<u8> = (0..=255).collect();
        let b64 = png_base64(16, 16, 1, &pixels).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }

    #[test]
    fn line_chart_is_svg_with_the_title() {
        let s = Series {
            name: "loss".into(),
            xs: vec![0., 1., 2.],
            ys: vec![3., 1., 0.5],
        };
        let svg = line_chart_svg("training loss", &[s], 400, 300).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("training loss"));
    }
}
