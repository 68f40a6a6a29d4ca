//! The report of rejected rows: CSV `line,error,message,details`, created on
//! the first rejection only (a clean import leaves no file behind).

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use crate::reply::{Detail, Rejection};

pub struct Report {
    path: PathBuf,
    writer: Option<csv::Writer<BufWriter<File>>>,
}

impl Report {
    pub fn new(path: PathBuf) -> Report {
        Report { path, writer: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether anything was written (the file exists from this run).
    pub fn created(&self) -> bool {
        self.writer.is_some()
    }

    /// Appends one row; the first call creates (or truncates) the file and writes the header.
    pub fn write(&mut self, line: u64, rejection: &Rejection) -> io::Result<()> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => {
                let file = File::create(&self.path)
                    .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", self.path.display())))?;
                let mut writer = csv::Writer::from_writer(BufWriter::new(file));
                writer.write_record(["line", "error", "message", "details"])?;
                self.writer.insert(writer)
            }
        };
        writer.write_record([line.to_string().as_str(), &rejection.error, &rejection.message, &details_text(&rejection.details)])?;
        Ok(())
    }

    /// Pushes what was written to disk, so an interrupted run leaves a usable report.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// `field: message; field: message`, one cell for a spreadsheet.
pub fn details_text(details: &[Detail]) -> String {
    details
        .iter()
        .map(|d| if d.field.is_empty() { d.message.clone() } else { format!("{}: {}", d.field, d.message) })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `<FILE>.rejected.csv` next to the input.
pub fn default_path(input: &Path) -> PathBuf {
    let mut name = input.as_os_str().to_os_string();
    name.push(".rejected.csv");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_csv_only_when_something_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut report = Report::new(path.clone());
        report.flush().unwrap();
        assert!(!path.exists() && !report.created());
        let mut rejection = Rejection::new("validation_failed", "invalid fields: timestamp, value");
        rejection.details = vec![
            Detail { field: "timestamp".into(), message: "`yesterday` is not an RFC 3339 timestamp, like 2026-02-18T12:00:00Z".into() },
            Detail { field: "value".into(), message: "must be a number, not a string".into() },
        ];
        report.write(7, &rejection).unwrap();
        report.write(9, &Rejection::new("invalid_csv", "the row has 2 fields, the header has 3")).unwrap();
        report.flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "line,error,message,details\n\
             7,validation_failed,\"invalid fields: timestamp, value\",\"timestamp: `yesterday` is not an RFC 3339 timestamp, like 2026-02-18T12:00:00Z; value: must be a number, not a string\"\n\
             9,invalid_csv,\"the row has 2 fields, the header has 3\",\n"
        );
    }

    #[test]
    fn default_path_sits_next_to_the_input() {
        assert_eq!(default_path(Path::new("data/m.csv")), PathBuf::from("data/m.csv.rejected.csv"));
    }
}
