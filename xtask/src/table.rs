//! The one table renderer: left-aligned columns, two spaces apart, the last column not
//! padded. Every human result (summary, doctor, plan, tools) uses it.

/// `headers` then `rows`, one line each, ending in a newline.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<pad$}  "));
            }
        }
        line.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_and_the_last_is_not_padded() {
        let rows = vec![vec!["k3d".into(), "5.7.5".into(), "ok".into()]];
        assert_eq!(
            super::render(&["TOOL", "VERSION", "STATUS"], &rows),
            "TOOL  VERSION  STATUS\nk3d   5.7.5    ok\n"
        );
    }
}
