//! The report as one self-contained HTML page with SVG charts, and the one-chart summary.
//!
//! The page has no script, no external style sheet and no font file: the charts are drawn
//! by plotters' SVG backend (lines, areas and rectangles; text as SVG `<text>`, which the
//! browser sets in its own sans-serif) and inlined. Every text of ours (the scenario's name
//! and description, the policies' and phases' names, the table) is escaped, and plotters
//! escapes what it writes, so a name with `<`, `&` or `>` cannot break the page.
//!
//! Charts, one row each, one column per report (`--compare`) on the same axes, the phases'
//! starts marked on every one: offered load against attempts at the dependency (the gap is
//! the amplification), success rate, caller latency p50 and p99, the breakers' bands (one
//! row per replica and endpoint, open red, half-open amber; the counts over time when there
//! are more than [`BAND_ROWS`]), the guards' levels and the throttle's probability when a
//! policy has them, and the hedges when any was sent.

use std::fmt::Write;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{BreakerBand, Report};

/// The most breakers drawn as rows of their own; beyond, the chart counts them over time.
const BAND_ROWS: usize = 8;
/// The size of one chart of the page.
const CHART: (u32, u32) = (560, 264);
/// The size of the summary chart.
const SUMMARY: (u32, u32) = (720, 420);
/// The height of a chart's legend row.
const LEGEND: u32 = 24;

/// The colours of the reports' curves, in order (the baseline first).
const POLICY_COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
const OFFERED: RGBColor = RGBColor(120, 120, 120);
const PHASE_MARK: RGBColor = RGBColor(170, 170, 170);
const OPEN: RGBColor = RGBColor(214, 39, 40);
const HALF_OPEN: RGBColor = RGBColor(255, 191, 0);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// The page.
pub(crate) fn render(reports: &[Report]) -> String {
    let Some(first) = reports.first() else {
        return page("simulate", "<p>No report.</p>\n");
    };
    let axes = Axes::of(reports);
    let mut body = String::new();
    let _ = writeln!(body, "<h1>{}</h1>", escape(&first.scenario));
    if !first.description.is_empty() {
        let _ = writeln!(body, "<p>{}</p>", escape(&first.description));
    }
    let _ = writeln!(
        body,
        "<p>{:.1} virtual seconds, {} replica{}, seed {}; {}.</p>",
        first.duration_secs,
        first.replicas,
        if first.replicas == 1 { "" } else { "s" },
        first.seed,
        reports
            .iter()
            .map(|r| format!(
                "policy <b>{}</b> (run in {:.1} real seconds)",
                escape(&r.policy),
                r.real_secs
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        body,
        "<h2>Per phase</h2>\n<pre>{}</pre>",
        escape(&super::table::render(reports))
    );
    let mut section = |title: &str, note: &str, chart: &dyn Fn(&Report, &Area) -> Drawn| {
        let _ = writeln!(body, "<h2>{}</h2>", escape(title));
        if !note.is_empty() {
            let _ = writeln!(body, "<p>{}</p>", escape(note));
        }
        body.push_str("<div class=\"row\">\n");
        for report in reports {
            let _ = writeln!(
                body,
                "<figure><figcaption>{}</figcaption>\n{}</figure>",
                escape(&report.policy),
                svg(CHART, |area| chart(report, area))
            );
        }
        body.push_str("</div>\n");
    };
    section(
        "Load: offered calls and attempts at the dependency",
        "Attempts above the offered calls are retries and hedges (the amplification); below, \
         calls the client's own guards kept from the dependency.",
        &|r, area| load_chart(r, area, &axes),
    );
    section("Success rate of the callers", "", &|r, area| {
        success_chart(std::slice::from_ref(r), area, &axes, "success rate (%)")
    });
    section(
        "Caller latency",
        "The whole call, retries and waits included, of the calls that ended in each step.",
        &|r, area| latency_chart(r, area, &axes),
    );
    section(
        "Breakers",
        "Open in red, half-open in amber.",
        &|r, area| breaker_chart(r, area, &axes),
    );
    if axes.guards > 0.0 {
        section(
            "Guards",
            "Summed over replicas at the end of each step.",
            &|r, area| guard_chart(r, area, &axes),
        );
    }
    if axes.throttle {
        section(
            "Client-side throttling",
            "The probability that an attempt of default criticality is throttled (the mean \
             over replicas).",
            &|r, area| throttle_chart(r, area, &axes),
        );
    }
    if axes.hedges > 0.0 {
        let won: Vec<String> = reports
            .iter()
            .map(|r| {
                format!(
                    "{}: {} won of {}",
                    r.policy, r.total.hedges_won, r.total.hedges_sent
                )
            })
            .collect();
        section(
            "Hedges",
            &format!("Hedges sent per second ({}).", won.join("; ")),
            &|r, area| hedge_chart(r, area, &axes),
        );
    }
    page(&format!("simulate: {}", first.scenario), &body)
}

/// The summary chart: offered calls and every report's attempts per second above, their
/// success rates below, the phases marked.
pub(crate) fn summary(reports: &[Report]) -> String {
    let axes = Axes::of(reports);
    svg(SUMMARY, |area| {
        let (top, bottom) = area.split_vertically(SUMMARY.1 * 3 / 5);
        let title = reports
            .first()
            .map_or(String::new(), |r| r.scenario.clone());
        let mut curves = vec![offered(reports.first())];
        curves.extend(reports.iter().enumerate().map(|(i, r)| Curve {
            label: format!("{}: attempts/s", r.policy),
            color: color(i),
            points: values(r, |s, i| s.attempts_rps.get(i).copied()),
        }));
        line_chart(&top, &title, &axes, 0.0..axes.rps, "per second", &curves)?;
        success_chart(reports, &bottom, &axes, "success rate (%)")
    })
}

/// Whether a chart was drawn; why not.
type Drawn = Result<(), String>;

/// A chart over the run's time, values on y.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The axes the reports share, so that charts side by side compare.
struct Axes {
    /// The longest run (virtual seconds).
    secs: f64,
    /// The phases' starts and names (the baseline's).
    phases: Vec<(f64, String)>,
    rps: f64,
    latency_ms: f64,
    guards: f64,
    throttle: bool,
    hedges: f64,
}

impl Axes {
    fn of(reports: &[Report]) -> Axes {
        let most = |f: &dyn Fn(&Report) -> f64| reports.iter().map(f).fold(0.0_f64, f64::max);
        let max = |v: &mut dyn Iterator<Item = f64>| v.fold(0.0_f64, f64::max);
        let guards = most(&|r| {
            let s = &r.series;
            let levels = [
                &s.budget_available,
                &s.bulkhead_in_flight,
                &s.adaptive_limit,
            ];
            max(&mut levels
                .into_iter()
                .flat_map(|l| l.iter().flatten().map(|&v| v as f64))
                .chain(s.rate_limited.iter().map(|&v| v as f64)))
        });
        Axes {
            secs: most(&|r| r.duration_secs).max(1.0),
            phases: reports
                .first()
                .map(|r| {
                    (r.phases.iter())
                        .map(|p| (p.start_secs, p.name.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            rps: headroom(most(&|r| {
                let s = &r.series;
                max(&mut s.offered_rps.iter().chain(&s.attempts_rps).copied())
            })),
            latency_ms: headroom(most(&|r| {
                let s = &r.series;
                max(&mut s.p50_ms.iter().chain(&s.p99_ms).flatten().copied())
            })),
            guards: if guards > 0.0 || reports.iter().any(has_guards) {
                headroom(guards)
            } else {
                0.0
            },
            throttle: reports
                .iter()
                .any(|r| r.series.throttle_probability.iter().any(Option::is_some)),
            hedges: most(&|r| max(&mut per_second(r, &r.series.hedges_sent).into_iter())),
        }
    }
}

/// Whether a report's policy has a budget, a bulkhead or an adaptive limit.
fn has_guards(r: &Report) -> bool {
    let s = &r.series;
    [
        &s.budget_available,
        &s.bulkhead_in_flight,
        &s.adaptive_limit,
    ]
    .iter()
    .any(|l| l.iter().any(Option::is_some))
}

/// A top for an axis whose values reach `max`: a tenth above, at least 1.
fn headroom(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * 1.1
    } else {
        1.0
    }
}

/// One curve of a line chart: `None` breaks it.
struct Curve {
    label: String,
    color: RGBColor,
    points: Vec<Option<(f64, f64)>>,
}

fn color(i: usize) -> RGBColor {
    POLICY_COLORS
        .get(i % POLICY_COLORS.len())
        .copied()
        .unwrap_or(BLACK)
}

/// `report`'s series at each step, `(t, value)`.
fn values(
    report: &Report,
    at: impl Fn(&super::report::Series, usize) -> Option<f64>,
) -> Vec<Option<(f64, f64)>> {
    let s = &report.series;
    (s.t_secs.iter().enumerate())
        .map(|(i, &t)| at(s, i).map(|v| (t, v)))
        .collect()
}

/// Counts per step as rates per second (the steps' lengths from `t_secs`).
fn per_second(report: &Report, counts: &[u64]) -> Vec<f64> {
    let t = &report.series.t_secs;
    (counts.iter().enumerate())
        .map(|(i, &n)| {
            let start = if i == 0 {
                0.0
            } else {
                t.get(i - 1).copied().unwrap_or(0.0)
            };
            let step = t.get(i).copied().unwrap_or(0.0) - start;
            if step > 0.0 { n as f64 / step } else { 0.0 }
        })
        .collect()
}

fn offered(report: Option<&Report>) -> Curve {
    Curve {
        label: "offered calls/s".to_owned(),
        color: OFFERED,
        points: report.map_or(Vec::new(), |r| {
            values(r, |s, i| s.offered_rps.get(i).copied())
        }),
    }
}

fn load_chart(r: &Report, area: &Area, axes: &Axes) -> Drawn {
    let curves = [
        offered(Some(r)),
        Curve {
            label: "attempts/s".to_owned(),
            color: color(0),
            points: values(r, |s, i| s.attempts_rps.get(i).copied()),
        },
    ];
    let title = match r.total.amplification {
        Some(a) => format!("amplification {a:.2}x over the run"),
        None => "no call offered".to_owned(),
    };
    line_chart(area, &title, axes, 0.0..axes.rps, "per second", &curves)
}

/// The success rates of `reports` (in their colours) on one chart.
fn success_chart(reports: &[Report], area: &Area, axes: &Axes, title: &str) -> Drawn {
    let curves: Vec<Curve> = (reports.iter().enumerate())
        .map(|(i, r)| Curve {
            label: format!("{}: success %", r.policy),
            color: color(i),
            points: values(r, |s, i| {
                s.success_rate.get(i).copied().flatten().map(|v| v * 100.0)
            }),
        })
        .collect();
    line_chart(area, title, axes, 0.0..105.0, "%", &curves)
}

fn latency_chart(r: &Report, area: &Area, axes: &Axes) -> Drawn {
    let curves = [
        Curve {
            label: "p50".to_owned(),
            color: color(0),
            points: values(r, |s, i| s.p50_ms.get(i).copied().flatten()),
        },
        Curve {
            label: "p99".to_owned(),
            color: OPEN,
            points: values(r, |s, i| s.p99_ms.get(i).copied().flatten()),
        },
    ];
    line_chart(
        area,
        "caller latency (ms)",
        axes,
        0.0..axes.latency_ms,
        "ms",
        &curves,
    )
}

fn guard_chart(r: &Report, area: &Area, axes: &Axes) -> Drawn {
    let level = |pick: fn(&super::report::Series) -> &Vec<Option<u64>>| {
        move |s: &super::report::Series, i: usize| {
            pick(s).get(i).copied().flatten().map(|v| v as f64)
        }
    };
    let mut curves = vec![
        Curve {
            label: "retry budget left".to_owned(),
            color: color(0),
            points: values(r, level(|s| &s.budget_available)),
        },
        Curve {
            label: "bulkhead in flight".to_owned(),
            color: color(1),
            points: values(r, level(|s| &s.bulkhead_in_flight)),
        },
        Curve {
            label: "adaptive limit".to_owned(),
            color: color(2),
            points: values(r, level(|s| &s.adaptive_limit)),
        },
    ];
    // Calls turned away by a hold, the server's quota or the rate limit (`rate_limited`),
    // only when there were any (a flat zero would hide the other curves' floor).
    if r.series.rate_limited.iter().any(|&n| n > 0) {
        curves.push(Curve {
            label: "rate-limited calls".to_owned(),
            color: OPEN,
            points: values(r, |s, i| s.rate_limited.get(i).map(|&v| v as f64)),
        });
    }
    line_chart(
        area,
        "guard levels",
        axes,
        0.0..axes.guards,
        "count",
        &curves,
    )
}

fn throttle_chart(r: &Report, area: &Area, axes: &Axes) -> Drawn {
    let curves = [Curve {
        label: "throttle probability".to_owned(),
        color: OPEN,
        points: values(r, |s, i| s.throttle_probability.get(i).copied().flatten()),
    }];
    line_chart(
        area,
        "client-side throttling",
        axes,
        0.0..1.05,
        "probability",
        &curves,
    )
}

fn hedge_chart(r: &Report, area: &Area, axes: &Axes) -> Drawn {
    let rates = per_second(r, &r.series.hedges_sent);
    let curves = [Curve {
        label: "hedges sent/s".to_owned(),
        color: color(1),
        points: (r.series.t_secs.iter().zip(rates))
            .map(|(&t, v)| Some((t, v)))
            .collect(),
    }];
    let title = format!(
        "{} hedges won of {}",
        r.total.hedges_won, r.total.hedges_sent
    );
    line_chart(
        area,
        &title,
        axes,
        0.0..headroom(axes.hedges),
        "per second",
        &curves,
    )
}

/// A line chart of `curves` over the run, the phases marked.
fn line_chart(
    area: &Area,
    title: &str,
    axes: &Axes,
    y: Range<f64>,
    y_desc: &str,
    curves: &[Curve],
) -> Drawn {
    let top = y.end;
    // The legend goes in a row of its own under the chart, where it hides no curve.
    let (plot, legend_row) = area.split_vertically(area.dim_in_pixel().1.saturating_sub(LEGEND));
    let mut chart = framed(&plot, title, axes, y, y_desc)?;
    mark_phases(&mut chart, axes, top)?;
    // The first curve on top (the offered load, the baseline): drawn last.
    for curve in curves.iter().rev() {
        let style = curve.color.stroke_width(2);
        for segment in segments(&curve.points) {
            chart
                .draw_series(LineSeries::new(segment, style))
                .map_err(text)?;
        }
    }
    legend(&legend_row, curves)
}

/// The curves' colours and labels in one row, left to right.
fn legend(row: &Area, curves: &[Curve]) -> Drawn {
    let font = ("sans-serif", 13).into_font().color(&BLACK);
    let y = i32::try_from(LEGEND / 2).unwrap_or(0);
    let mut x = 60;
    for curve in curves {
        row.draw(&PathElement::new(
            [(x, y), (x + 18, y)],
            curve.color.stroke_width(3),
        ))
        .map_err(text)?;
        row.draw(&Text::new(
            curve.label.clone(),
            (x + 24, y),
            font.clone().pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(text)?;
        // The browser's sans-serif at 13 px: about 7 px a character.
        let width = i32::try_from(curve.label.chars().count()).unwrap_or(40) * 7;
        x += 24 + width + 24;
    }
    Ok(())
}

/// The runs of points between `None`s, each a line of its own.
fn segments(points: &[Option<(f64, f64)>]) -> Vec<Vec<(f64, f64)>> {
    let mut segments = vec![Vec::new()];
    for point in points {
        match (point, segments.last_mut()) {
            (Some(p), Some(segment)) => segment.push(*p),
            (None, Some(segment)) if !segment.is_empty() => segments.push(Vec::new()),
            _ => {}
        }
    }
    segments.retain(|s| !s.is_empty());
    segments
}

/// A thin vertical line at each phase's start, its name beside it at the top.
fn mark_phases<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, axes: &Axes, top: f64) -> Drawn {
    let font = ("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90));
    for (at, name) in &axes.phases {
        if *at > 0.0 {
            chart
                .draw_series(LineSeries::new([(*at, 0.0), (*at, top)], PHASE_MARK))
                .map_err(text)?;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                name.clone(),
                (*at + axes.secs * 0.005, top),
                font.clone(),
            )))
            .map_err(text)?;
    }
    Ok(())
}

/// One row per band (replica × endpoint) when they are few; else the breakers open and
/// half-open over time, stacked.
fn breaker_chart(r: &Report, area: &Area, axes: &Axes) -> Drawn {
    let bands = &r.breakers;
    if bands.len() > BAND_ROWS {
        return breaker_counts(r, area, axes);
    }
    let rows = bands.len().max(1) as f64;
    let title = if bands.is_empty() {
        "no breaker opened".to_owned()
    } else {
        format!(
            "{} breaker{} opened",
            bands.len(),
            if bands.len() == 1 { "" } else { "s" }
        )
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .margin_right(24)
        .x_label_area_size(32)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..axes.secs, 0.0..rows)
        .map_err(text)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .light_line_style(WHITE)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 13))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .y_labels(6)
        .x_desc("virtual seconds")
        .draw()
        .map_err(text)?;
    mark_phases(&mut chart, axes, rows)?;
    let font = ("sans-serif", 13).into_font().color(&BLACK);
    for (row, band) in bands.iter().enumerate() {
        // The first band on top.
        let y = rows - row as f64 - 1.0;
        chart
            .draw_series(band.spans.iter().map(|span| {
                let color = if span.state == "open" {
                    OPEN
                } else {
                    HALF_OPEN
                };
                Rectangle::new(
                    [(span.from_secs, y + 0.1), (span.to_secs, y + 0.55)],
                    color.filled(),
                )
            }))
            .map_err(text)?;
        chart
            .draw_series(std::iter::once(Text::new(
                band_name(band),
                (axes.secs * 0.01, y + 0.6),
                font.clone().pos(Pos::new(HPos::Left, VPos::Bottom)),
            )))
            .map_err(text)?;
    }
    Ok(())
}

fn band_name(band: &BreakerBand) -> String {
    format!(
        "replica {} {} ({})",
        band.replica, band.endpoint, band.policy
    )
}

/// The breakers open (red) and half-open (amber, stacked above) at each step.
fn breaker_counts(r: &Report, area: &Area, axes: &Axes) -> Drawn {
    let count = |t: f64, state: &str| {
        (r.breakers.iter())
            .filter(|b| {
                (b.spans.iter()).any(|s| s.state == state && s.from_secs <= t && t < s.to_secs)
            })
            .count() as f64
    };
    let t = &r.series.t_secs;
    let open: Vec<(f64, f64)> = t.iter().map(|&t| (t, count(t, "open"))).collect();
    let either: Vec<(f64, f64)> = (open.iter())
        .map(|&(t, n)| (t, n + count(t, "half_open")))
        .collect();
    let top = r.breakers.len() as f64 * 1.1;
    let title = format!(
        "{} breakers opened: how many are open, half-open",
        r.breakers.len()
    );
    let mut chart = framed(area, &title, axes, 0.0..top, "breakers")?;
    mark_phases(&mut chart, axes, top)?;
    chart
        .draw_series(AreaSeries::new(either, 0.0, HALF_OPEN.filled()))
        .map_err(text)?;
    chart
        .draw_series(AreaSeries::new(open, 0.0, OPEN.filled()))
        .map_err(text)?;
    Ok(())
}

/// A chart's frame on `area`: its title, the run's time on x, `y` on y, the grid and the
/// axes' labels (every chart of the page alike).
fn framed<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    axes: &Axes,
    y: Range<f64>,
    y_desc: &str,
) -> Result<Chart<'a, DB>, String> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .margin_right(24)
        .x_label_area_size(32)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..axes.secs, y)
        .map_err(text)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 13))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .y_labels(6)
        .x_desc("virtual seconds")
        .y_desc(y_desc)
        .draw()
        .map_err(text)?;
    Ok(chart)
}

/// An SVG of `size` drawn by `paint`; when plotters fails, a small SVG that says why (the
/// page is still written).
fn svg(size: (u32, u32), paint: impl FnOnce(&Area) -> Drawn) -> String {
    let mut out = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(text)
            .and_then(|()| paint(&root))
            .and_then(|()| root.present().map_err(text))
    };
    match drawn {
        // No blank line (an empty label would make one): Markdown ends an inline HTML
        // block at a blank line, and the guide inlines these SVGs in its docs.
        Ok(()) if out.contains("\n\n") => {
            let mut lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
            lines.push("");
            lines.join("\n")
        }
        Ok(()) => out,
        Err(why) => format!(
            "<svg width=\"{}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">\
             <text x=\"10\" y=\"20\">chart not drawn: {}</text></svg>\n",
            size.0,
            size.1,
            escape(&why)
        ),
    }
}

/// An axis' label: whole numbers without decimals, others with at most two.
fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.2}");
        text.trim_end_matches('0').to_owned()
    }
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The page around `body`.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}\n\
         pre {{ font-size: 13px; }}\n\
         .row {{ display: flex; flex-wrap: wrap; gap: 12px; }}\n\
         figure {{ margin: 0; }}\n\
         figcaption {{ font-weight: bold; }}\n\
         </style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

/// `text` safe in HTML and XML, in an element or an attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::report::samples::report;
    use super::super::report::{BreakerBand, BreakerSpan, Report};
    use super::{render, summary};

    /// Checks that `text` is well-formed markup: every tag closed in order (HTML's void
    /// `<meta>` aside), every `&` an entity, no `<` in text; the tags' names, in order.
    fn well_formed(text: &str) -> Result<Vec<String>, String> {
        let mut open: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find(['<', '&']) {
            let (before, from) = rest.split_at(at);
            let _ = before;
            if from.starts_with('&') {
                let end = from.find(';').ok_or("an & without ;")?;
                let entity = &from[1..end];
                let ok = matches!(entity, "lt" | "gt" | "amp" | "quot" | "apos" | "#39");
                if !ok {
                    return Err(format!("unknown entity &{entity};"));
                }
                rest = &from[end + 1..];
                continue;
            }
            let end = from.find('>').ok_or("a < without >")?;
            let tag = &from[1..end];
            rest = &from[end + 1..];
            if tag.contains('<') {
                return Err(format!("a < inside a tag: {tag}"));
            }
            if tag.starts_with('!') || tag.starts_with('?') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                match open.pop() {
                    Some(last) if last == name => continue,
                    last => return Err(format!("</{name}> closes {last:?}")),
                }
            }
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if name.is_empty() {
                return Err(format!("a bare < in the text: <{tag}>"));
            }
            names.push(name.clone());
            if !tag.ends_with('/') && name != "meta" {
                open.push(name);
            }
        }
        if open.is_empty() {
            Ok(names)
        } else {
            Err(format!("never closed: {open:?}"))
        }
    }

    /// Whether plotters drew `label` as a text of its own.
    fn has_text(svg: &str, label: &str) -> bool {
        svg.contains(&format!(">\n{label}\n</text>"))
    }

    #[test]
    fn a_summary_has_no_blank_line_even_with_an_empty_name() {
        let mut r = report("", "");
        r.phases[0].name = String::new();
        let svg = summary(&[r]);
        assert!(!svg.contains("\n\n") && svg.ends_with("</svg>\n"), "{svg}");
    }

    #[test]
    fn a_run_without_samples_still_draws_its_axes() -> Result<(), String> {
        let mut r = report("instant", "defaults");
        r.duration_secs = 0.0;
        let s = &mut r.series;
        for list in [&mut s.t_secs, &mut s.offered_rps, &mut s.attempts_rps] {
            list.clear();
        }
        for list in [&mut s.success_rate, &mut s.p50_ms, &mut s.p99_ms] {
            list.clear();
        }
        let html = render(&[r.clone()]);
        let tags = well_formed(&html)?;
        assert!(!html.contains("chart not drawn"), "{html}");
        assert_eq!(tags.iter().filter(|t| *t == "svg").count(), 5);
        well_formed(&summary(&[r]))?;
        well_formed(&render(&[]))?;
        Ok(())
    }

    #[test]
    fn the_checker_refuses_broken_markup() {
        assert!(well_formed("<p>a &amp; b</p>").is_ok());
        assert!(well_formed("<p>a < b</p>").is_err());
        assert!(well_formed("<p>a & b</p>").is_err());
        assert!(well_formed("<p><b>a</p></b>").is_err());
        assert!(well_formed("<svg><text>x</text>").is_err());
    }

    #[test]
    fn one_self_contained_well_formed_page() -> Result<(), String> {
        let html = render(&[report("outage", "defaults")]);
        let tags = well_formed(&html)?;
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        for absent in ["<script", "<link", "src=", "@import", "url("] {
            assert!(!html.contains(absent), "{absent} in the page");
        }
        let count = |name: &str| tags.iter().filter(|t| *t == name).count();
        // Load, success, latency, breakers and the guards (the sample has a budget): one
        // chart each, each with the phases' names drawn.
        assert_eq!(count("svg"), 5, "{tags:?}");
        assert!(count("text") > 20);
        assert!(has_text(&html, "outage") && has_text(&html, "healthy"));
        assert!(html.contains("The dependency answers nothing for 20 s."));
        assert!(html.contains("<pre>scenario outage: 30.0 s virtual"));
        // The breaker's spans: an open red rectangle and a half-open amber one.
        assert!(html.contains("fill=\"#D62728\""), "no open band");
        assert!(html.contains("fill=\"#FFBF00\""), "no half-open band");
        Ok(())
    }

    #[test]
    fn names_with_markup_are_escaped() -> Result<(), String> {
        let mut r = report("<b>&\"quoted\"</b>", "a<&>policy");
        r.description = "<script>alert(1)</script> & more".to_owned();
        r.phases[1].name = "down <&>".to_owned();
        let html = render(&[r.clone()]);
        well_formed(&html)?;
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        assert!(html.contains("down &lt;&amp;&gt;"));
        well_formed(&summary(&[r]))?;
        Ok(())
    }

    #[test]
    fn compared_policies_side_by_side_on_the_same_axes() -> Result<(), String> {
        let mut other = report("outage", "no-budget");
        // Five times the attempts: the baseline's chart must reach as high.
        other.series.attempts_rps.iter_mut().for_each(|v| *v *= 5.0);
        other.series.hedges_sent[15] = 40;
        other.total.hedges_sent = 40;
        let html = render(&[report("outage", "defaults"), other]);
        let tags = well_formed(&html)?;
        // Every chart twice, and the hedges' chart since one policy hedged.
        assert_eq!(tags.iter().filter(|t| *t == "svg").count(), 12);
        assert_eq!(
            html.matches("<figcaption>no-budget</figcaption>").count(),
            6
        );
        assert!(
            html.contains("Hedges sent per second (defaults: 0 won of 0; no-budget: 0 won of 40).")
        );
        // The same y axis on both load charts (up to 625 × 1.1): its 600 label twice, where
        // the baseline alone (up to 125 × 1.1) has none.
        let alone = render(&[report("outage", "defaults")]);
        assert_eq!(html.matches(">\n600\n</text>").count(), 2, "shared axis");
        assert_eq!(alone.matches(">\n600\n</text>").count(), 0);
        Ok(())
    }

    #[test]
    fn many_breakers_are_counted_not_listed() -> Result<(), String> {
        let mut r = report("storm", "defaults");
        r.replicas = 20;
        r.breakers = (0..20)
            .map(|replica| BreakerBand {
                replica,
                policy: "default".to_owned(),
                endpoint: "http://dependency.test".to_owned(),
                spans: vec![BreakerSpan {
                    state: "open".to_owned(),
                    from_secs: 10.0 + f64::from(replica) * 0.5,
                    to_secs: 20.0,
                }],
            })
            .collect();
        let html = render(&[r]);
        well_formed(&html)?;
        assert!(html.contains("20 breakers opened: how many are open, half-open"));
        assert!(!html.contains("replica 19 "));
        Ok(())
    }

    #[test]
    fn the_summary_is_one_svg_with_every_policy() -> Result<(), String> {
        let reports: Vec<Report> =
            vec![report("outage", "defaults"), report("outage", "no-budget")];
        let svg = summary(&reports);
        let tags = well_formed(&svg)?;
        assert_eq!(tags.first().map(String::as_str), Some("svg"));
        assert_eq!(tags.iter().filter(|t| *t == "svg").count(), 1);
        for label in [
            "offered calls/s",
            "defaults: attempts/s",
            "no-budget: success %",
            "outage",
        ] {
            assert!(has_text(&svg, label), "{label} missing");
        }
        Ok(())
    }
}
