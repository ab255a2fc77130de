//! Pure translation of the engine's build messages (the classic builder's JSON lines) into
//! berth's [`BuildEvent`]s: output cut into whole lines, pull progress kept to its status lines,
//! the image id from the `aux` message, and the build's error as the stream's last item.

use std::collections::VecDeque;

use berth_runtime::{BuildEvent, RuntimeError};
use bollard::models::BuildInfo;

/// Longest line kept whole: output with no line break (a progress bar drawn with `\r`, a binary
/// dump) is cut here rather than held in memory until its end.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// The state of one build's output between messages.
#[derive(Debug, Default)]
pub(crate) struct BuildOutput {
    /// Text after the last line break, waiting for the rest of its line.
    partial: String,
    /// The built image's id, once the engine has said it.
    pub image_id: Option<String>,
    /// Events ready to hand on, in order.
    pub ready: VecDeque<Result<BuildEvent, RuntimeError>>,
}

impl BuildOutput {
    /// Takes in one engine message; answers `true` when it was the build's error (then the last
    /// item in `ready` is that error, and the build is over).
    pub(crate) fn take(&mut self, info: BuildInfo) -> bool {
        if let Some(text) = &info.stream {
            self.push_text(text);
        }
        if let Some(status) = info.status.as_deref().filter(|status| !status.is_empty()) {
            // Pull progress (`Downloading [==>  ]`) comes many times a second: only its steps.
            let progressing = info
                .progress_detail
                .as_ref()
                .is_some_and(|detail| detail.current.is_some() || detail.total.is_some());
            if !progressing {
                let line = match info.id.as_deref().filter(|id| !id.is_empty()) {
                    Some(id) => format!("{id}: {status}"),
                    None => status.to_owned(),
                };
                self.flush();
                self.ready.push_back(Ok(BuildEvent::Log(line)));
            }
        }
        if let Some(id) = info.aux.and_then(|aux| aux.id).filter(|id| !id.is_empty()) {
            self.image_id = Some(id);
        }
        if let Some(detail) = info.error_detail {
            self.flush();
            let message = detail
                .message
                .map(|message| message.trim().to_owned())
                .filter(|message| !message.is_empty())
                .unwrap_or_else(|| "the build failed (the engine gave no reason)".to_owned());
            self.ready.push_back(Err(RuntimeError::Invalid(message)));
            return true;
        }
        false
    }

    /// Hands on what is left of an unfinished last line.
    pub(crate) fn flush(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.push_line(&line);
        }
    }

    fn push_text(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.push_line(&line[..end]);
        }
        if self.partial.len() >= MAX_LINE {
            self.flush();
        }
    }

    fn push_line(&mut self, line: &str) {
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.trim().is_empty() {
            self.ready.push_back(Ok(BuildEvent::Log(line.to_owned())));
        }
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{ErrorDetail, ImageId, ProgressDetail};

    use super::*;

    fn stream(text: &str) -> BuildInfo {
        BuildInfo {
            stream: Some(text.to_owned()),
            ..BuildInfo::default()
        }
    }

    fn logs(output: &mut BuildOutput) -> Vec<String> {
        output
            .ready
            .drain(..)
            .map(|event| match event {
                Ok(BuildEvent::Log(line)) => line,
                other => panic!("not a log line: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn output_is_cut_into_whole_lines_across_messages() {
        let mut output = BuildOutput::default();
        assert!(!output.take(stream("Step 1/3 : FROM x\n ---> 2f6d")));
        assert!(!output.take(stream("77c648e9\n\nStep 2/3 : RUN echo hi\r\n")));
        assert!(!output.take(stream("hi")));
        assert_eq!(
            logs(&mut output),
            ["Step 1/3 : FROM x", " ---> 2f6d77c648e9", "Step 2/3 : RUN echo hi"]
        );
        output.flush();
        assert_eq!(logs(&mut output), ["hi"]);
    }

    #[test]
    fn a_line_without_an_end_is_cut_at_the_cap() {
        let mut output = BuildOutput::default();
        output.take(stream(&"x".repeat(MAX_LINE + 10)));
        assert_eq!(logs(&mut output), ["x".repeat(MAX_LINE + 10)]);
        output.flush();
        assert!(output.ready.is_empty());
    }

    #[test]
    fn pull_progress_keeps_only_its_steps() {
        let mut output = BuildOutput::default();
        output.take(BuildInfo {
            status: Some("Pulling from library/alpine".into()),
            id: Some("3.20".into()),
            ..BuildInfo::default()
        });
        output.take(BuildInfo {
            status: Some("Downloading".into()),
            id: Some("abc".into()),
            progress_detail: Some(ProgressDetail {
                current: Some(10),
                total: Some(100),
            }),
            ..BuildInfo::default()
        });
        assert_eq!(logs(&mut output), ["3.20: Pulling from library/alpine"]);
    }

    #[test]
    fn the_image_id_and_the_error_are_read() {
        let mut output = BuildOutput::default();
        output.take(BuildInfo {
            aux: Some(ImageId {
                id: Some("sha256:abc".into()),
            }),
            ..BuildInfo::default()
        });
        assert_eq!(output.image_id.as_deref(), Some("sha256:abc"));
        output.take(stream("Step 2/2 : RUN exit 3\n ---> Running in 1f"));
        let failed = output.take(BuildInfo {
            error_detail: Some(ErrorDetail {
                code: Some(3),
                message: Some("The command '/bin/sh -c exit 3' returned a non-zero code: 3".into()),
            }),
            ..BuildInfo::default()
        });
        assert!(failed);
        let events: Vec<_> = output.ready.drain(..).collect();
        assert_eq!(
            events,
            [
                Ok(BuildEvent::Log("Step 2/2 : RUN exit 3".into())),
                Ok(BuildEvent::Log(" ---> Running in 1f".into())),
                Err(RuntimeError::Invalid(
                    "The command '/bin/sh -c exit 3' returned a non-zero code: 3".into()
                )),
            ]
        );
    }
}
