//! What a cell shows: its result, displays, plots, images and progress bars.
//!
//! A cell's last value becomes its `execute_result` (tensors as text and
//! HTML). `display`, `plot`, `image`, `html` and `svg` send `display_data`
//! at once; a progress bar sends one display and then updates it in place
//! with `update_display_data`, at most ten times a second.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use candle_core::DType;
use jupyter_protocol::MediaType;
use rhai::{Array, Dynamic, Engine, INT, Map};

use super::Session;
use super::tensor::{RResult, ScriptTensor, c, err};
use crate::display::{Series, html_escape, line_chart_svg, png_base64, tensor_media};

/// The media of a cell's result; `None` for unit (statements).
pub fn result_media(v: &Dynamic) -> Option<Vec<MediaType>> {
    if v.is_unit() {
        return None;
    }
    if let Some(t) = v.read_lock::<ScriptTensor>() {
        return Some(tensor_media(&t.t));
    }
    Some(vec![MediaType::Plain(describe(v))])
}

/// A value as text, the way the REPL prints it.
pub fn describe(v: &Dynamic) -> String {
    if let Some(t) = v.read_lock::<ScriptTensor>() {
        return match tensor_media(&t.t).into_iter().next() {
            Some(MediaType::Plain(s)) => s,
            _ => crate::display::tensor_summary(&t.t),
        };
    }
    if v.is_string() {
        return v.to_string();
    }
    if let Some(a) = v.read_lock::<Array>() {
        return format!(
            "[{}]",
            a.iter().map(describe_inner).collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(m) = v.read_lock::<Map>() {
        let parts: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{k}: {}", describe_inner(v)))
            .collect();
        return format!("#{{{}}}", parts.join(", "));
    }
    if v.is_float() {
        return format!("{}", v.as_float().unwrap_or(f64::NAN));
    }
    if v.is::<super::nn::Linear>() {
        let l = v.clone_cast::<super::nn::Linear>();
        return format!("Linear(weight {:?})", l.0.weight().dims());
    }
    let s = v.to_string();
    if s.is_empty() || s.starts_with('<') {
        v.type_name().to_owned()
    } else {
        s
    }
}

fn describe_inner(v: &Dynamic) -> String {
    if v.is_string() {
        format!("{:?}", v.to_string())
    } else if let Some(t) = v.read_lock::<ScriptTensor>() {
        crate::display::tensor_summary(&t.t)
    } else {
        describe(v)
    }
}

/// Numbers from an array or a 1-D tensor.
fn numbers(v: &Dynamic) -> RResult<Vec<f64>> {
    if let Some(t) = v.read_lock::<ScriptTensor>() {
        let flat =
            c(c(c(t.t.flatten_all())?.to_dtype(DType::F64))?.to_device(&candle_core::Device::Cpu))?;
        return c(flat.to_vec1::<f64>());
    }
    if let Some(a) = v.read_lock::<Array>() {
        return a
            .iter()
            .map(|x| {
                x.as_float()
                    .or_else(|_| x.as_int().map(|i| i as f64))
                    .map_err(|t| format!("plot takes numbers, found {t}").into())
            })
            .collect();
    }
    err(format!(
        "plot takes an array or a tensor of numbers, not {}",
        v.type_name()
    ))
}

fn series_of(v: &Dynamic) -> RResult<Vec<Series>> {
    if let Some(m) = v.read_lock::<Map>() {
        let mut out = Vec::new();
        for (name, data) in m.iter() {
            let ys = numbers(data)?;
            out.push(Series {
                name: name.to_string(),
                xs: (0..ys.len()).map(|i| i as f64).collect(),
                ys,
            });
        }
        return Ok(out);
    }
    let ys = numbers(v)?;
    Ok(vec![Series {
        name: "y".into(),
        xs: (0..ys.len()).map(|i| i as f64).collect(),
        ys,
    }])
}

/// An image from a tensor: [h, w] grey, or [h, w, 3|4] colour. Floats are
/// scaled from their min..max to 0..255.
fn image_png(t: &ScriptTensor) -> RResult<String> {
    let dims = t.t.dims().to_vec();
    let (h, w, ch) = match dims.as_slice() {
        [h, w] => (*h, *w, 1),
        [h, w, c @ (1 | 3 | 4)] => (*h, *w, *c),
        _ => {
            return err(format!(
                "image() takes [h, w] or [h, w, 3] tensors, not {dims:?}"
            ));
        }
    };
    let v = c(c(c(t.t.flatten_all())?.to_dtype(DType::F64))?.to_device(&candle_core::Device::Cpu))?;
    let v = c(v.to_vec1::<f64>())?;
    let bytes: Vec<u8> = if t.t.dtype() == DType::U8 {
        v.iter().map(|&x| x as u8).collect()
    } else {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let span = if hi > lo { hi - lo } else { 1.0 };
        v.iter()
            .map(|&x| (((x - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect()
    };
    png_base64(w as u32, h as u32, ch as u8, &bytes).map_err(Into::into)
}

/// A progress bar that redraws itself in place.
#[derive(Clone)]
pub struct Progress(Rc<RefCell<ProgressState>>);

pub struct ProgressState {
    id: String,
    label: String,
    total: i64,
    done: i64,
    info: String,
    started: Instant,
    last_sent: Option<Instant>,
    session: Rc<Session>,
}

impl ProgressState {
    fn media(&self) -> Vec<MediaType> {
        let frac = if self.total > 0 {
            (self.done as f64 / self.total as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = if frac > 0.0 && frac < 1.0 {
            format!(", eta {:.1}s", elapsed * (1.0 - frac) / frac)
        } else {
            String::new()
        };
        let bar_len = 30;
        let filled = (frac * bar_len as f64).round() as usize;
        let text = format!(
            "{} [{}{}] {}/{} {:.0}% {:.1}s{}{}",
            self.label,
            "#".repeat(filled),
            ".".repeat(bar_len - filled),
            self.done,
            self.total,
            frac * 100.0,
            elapsed,
            eta,
            if self.info.is_empty() {
                String::new()
            } else {
                format!("  {}", self.info)
            }
        );
        let html = format!(
            "<div class=\"academy-progress\" style=\"font-family:monospace\">{} <progress value=\"{}\" max=\"{}\" style=\"width:200px\"></progress> {}/{} ({:.0}%) {:.1}s{} <span>{}</span></div>",
            html_escape(&self.label),
            self.done,
            self.total.max(1),
            self.done,
            self.total,
            frac * 100.0,
            elapsed,
            eta,
            html_escape(&self.info)
        );
        vec![MediaType::Plain(text), MediaType::Html(html)]
    }

    fn send(&mut self, force: bool) {
        let now = Instant::now();
        if !force
            && self
                .last_sent
                .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        let first = self.last_sent.is_none();
        self.last_sent = Some(now);
        let media = self.media();
        let id = self.id.clone();
        self.session.with_output(|o| {
            if first {
                o.display(media, Some(&id))
            } else {
                o.update_display(media, &id)
            }
        });
    }
}

fn info_text(v: &Dynamic) -> String {
    if let Some(m) = v.read_lock::<Map>() {
        return m
            .iter()
            .map(|(k, v)| match v.as_float() {
                Ok(f) => format!("{k}={f:.4}"),
                Err(_) => format!("{k}={}", describe(v)),
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    describe(v)
}

pub fn register(engine: &mut Engine, session: &Rc<Session>) {
    engine.register_type_with_name::<Progress>("Progress");
    let s = session.clone();
    engine.register_fn("display", move |v: Dynamic| {
        let media = result_media(&v).unwrap_or_else(|| vec![MediaType::Plain("()".into())]);
        s.with_output(|o| o.display(media, None));
    });
    let s = session.clone();
    engine.register_fn("html", move |h: &str| {
        s.with_output(|o| o.display(vec![MediaType::Html(h.to_owned())], None))
    });
    let s = session.clone();
    engine.register_fn("svg", move |h: &str| {
        s.with_output(|o| o.display(vec![MediaType::Svg(h.to_owned())], None))
    });
    let s = session.clone();
    engine.register_fn("markdown", move |h: &str| {
        s.with_output(|o| o.display(vec![MediaType::Markdown(h.to_owned())], None))
    });
    let s = session.clone();
    engine.register_fn("eprint", move |text: Dynamic| {
        s.with_output(|o| o.stderr(&format!("{}\n", describe(&text))))
    });
    let s = session.clone();
    engine.register_fn("clear_output", move || {
        s.with_output(|o| o.clear_output(true))
    });
    let s = session.clone();
    engine.register_fn("sleep", move |secs: f64| s.sleep(secs));
    let s = session.clone();
    engine.register_fn("sleep", move |secs: INT| s.sleep(secs as f64));

    let plot = {
        let s = session.clone();
        move |data: Dynamic, title: &str| -> RResult<()> {
            let series = series_of(&data)?;
            let svg = line_chart_svg(title, &series, 640, 360)?;
            let summary: Vec<String> = series
                .iter()
                .map(|s| {
                    format!(
                        "{}: {} points, last {:.4}",
                        s.name,
                        s.ys.len(),
                        s.ys.last().copied().unwrap_or(f64::NAN)
                    )
                })
                .collect();
            s.with_output(|o| {
                o.display(
                    vec![
                        MediaType::Svg(svg),
                        MediaType::Plain(format!("<plot {title:?}: {}>", summary.join("; "))),
                    ],
                    None,
                )
            });
            Ok(())
        }
    };
    let p2 = plot.clone();
    engine.register_fn("plot", move |data: Dynamic| p2(data, ""));
    engine.register_fn("plot", move |data: Dynamic, title: &str| plot(data, title));
    let s = session.clone();
    engine.register_fn("image", move |t: ScriptTensor| -> RResult<()> {
        let png = image_png(&t)?;
        let dims = t.t.dims().to_vec();
        s.with_output(|o| {
            o.display(
                vec![
                    MediaType::Png(png),
                    MediaType::Plain(format!("<image {dims:?}>")),
                ],
                None,
            )
        });
        Ok(())
    });

    let make = {
        let s = session.clone();
        move |total: INT, label: &str| {
            Progress(Rc::new(RefCell::new(ProgressState {
                id: format!("progress-{}", uuid::Uuid::new_v4()),
                label: label.to_owned(),
                total,
                done: 0,
                info: String::new(),
                started: Instant::now(),
                last_sent: None,
                session: s.clone(),
            })))
        }
    };
    let m2 = make.clone();
    engine.register_fn("progress", move |total: INT| {
        let p = m2(total, "");
        p.0.borrow_mut().send(true);
        p
    });
    engine.register_fn("progress", move |total: INT, label: &str| {
        let p = make(total, label);
        p.0.borrow_mut().send(true);
        p
    });
    engine.register_fn("update", |p: &mut Progress, done: INT| {
        let mut st = p.0.borrow_mut();
        st.done = done;
        let finished = done >= st.total;
        st.send(finished);
    });
    engine.register_fn("update", |p: &mut Progress, done: INT, info: Dynamic| {
        let mut st = p.0.borrow_mut();
        st.done = done;
        st.info = info_text(&info);
        let finished = done >= st.total;
        st.send(finished);
    });
    engine.register_fn("finish", |p: &mut Progress| {
        let mut st = p.0.borrow_mut();
        st.done = st.total;
        st.send(true);
    });
}
