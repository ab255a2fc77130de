//! Templates and warm pools: create, replace, read, list and delete templates (`/v1/templates`),
//! build a template's image from a streamed build context, and read the state of every pool
//! (`/v1/pools`).

use berth_api::{BuildLine, PoolList, PoolView, TemplateList, TemplateRequest, TemplateView};
use futures::stream::BoxStream;
use reqwest::Url;
use reqwest::header::CONTENT_TYPE;

use crate::work::json_lines;
use crate::{BerthClient, ClientError, TAR_CONTENT_TYPE, join_segments};

/// The lines of a template build as the server streams them: `log` lines, then `done` or `error`.
pub type BuildStream = BoxStream<'static, Result<BuildLine, ClientError>>;

impl BerthClient {
    /// `POST /v1/templates`: creates a template; a conflict (409) if its `name:tag` exists.
    pub async fn create_template(&self, request: &TemplateRequest) -> Result<TemplateView, ClientError> {
        self.send_json(self.http.post(templates_url(&self.base)).json(request))
            .await
    }

    /// `PUT /v1/templates/{reference}`: creates the template `reference` (`name` or `name:tag`)
    /// or replaces it.
    pub async fn put_template(&self, reference: &str, request: &TemplateRequest) -> Result<TemplateView, ClientError> {
        self.send_json(self.http.put(template_url(&self.base, reference)).json(request))
            .await
    }

    /// `GET /v1/templates/{reference}`: one template with its pool's state.
    pub async fn get_template(&self, reference: &str) -> Result<TemplateView, ClientError> {
        self.send_json(self.http.get(template_url(&self.base, reference))).await
    }

    /// `GET /v1/templates`: every template, ordered by name and tag.
    pub async fn list_templates(&self) -> Result<Vec<TemplateView>, ClientError> {
        let list: TemplateList = self.send_json(self.http.get(templates_url(&self.base))).await?;
        Ok(list.items)
    }

    /// `DELETE /v1/templates/{reference}`: removes the template and its idle pooled sandboxes.
    pub async fn delete_template(&self, reference: &str) -> Result<(), ClientError> {
        self.send(self.http.delete(template_url(&self.base, reference)))
            .await
            .map(drop)
    }

    /// `POST /v1/templates/{reference}/build`: builds the template's image from the tar build
    /// `context` (streamed as it is produced) with the Dockerfile at `dockerfile` in it (the
    /// server's default, `Dockerfile`, when `None`) and `build_args`. Answers once the server has
    /// started the build: its output then streams line by line, ending with `done` or `error`.
    pub async fn build_template(
        &self,
        reference: &str,
        dockerfile: Option<&str>,
        build_args: &[(String, String)],
        context: reqwest::Body,
    ) -> Result<BuildStream, ClientError> {
        let builder = self
            .http
            .post(build_url(&self.base, reference, dockerfile, build_args))
            .header(CONTENT_TYPE, TAR_CONTENT_TYPE)
            .body(context);
        let response = self.open(builder).await?;
        Ok(json_lines(self.body_stream(response)))
    }

    /// `GET /v1/pools`: the pool of every template that has one.
    pub async fn list_pools(&self) -> Result<Vec<PoolView>, ClientError> {
        let list: PoolList = self
            .send_json(self.http.get(join_segments(&self.base, &["v1", "pools"])))
            .await?;
        Ok(list.items)
    }
}

fn templates_url(base: &Url) -> Url {
    join_segments(base, &["v1", "templates"])
}

/// The URL of one template; the reference stays one path segment whatever it contains.
fn template_url(base: &Url, reference: &str) -> Url {
    join_segments(base, &["v1", "templates", reference])
}

fn build_url(base: &Url, reference: &str, dockerfile: Option<&str>, build_args: &[(String, String)]) -> Url {
    let mut url = join_segments(base, &["v1", "templates", reference, "build"]);
    {
        let mut query = url.query_pairs_mut();
        if let Some(dockerfile) = dockerfile {
            query.append_pair("dockerfile", dockerfile);
        }
        for (key, value) in build_args {
            query.append_pair("buildarg", &format!("{key}={value}"));
        }
    }
    // An empty query would leave a bare `?`.
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_base_url;

    #[test]
    fn template_urls_keep_the_reference_in_one_segment() {
        let base = parse_base_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(templates_url(&base).as_str(), "http://127.0.0.1:8080/v1/templates");
        assert_eq!(
            template_url(&base, "python:3.12").as_str(),
            "http://127.0.0.1:8080/v1/templates/python:3.12"
        );
        assert_eq!(
            template_url(&base, "../x?y#z").as_str(),
            "http://127.0.0.1:8080/v1/templates/..%2Fx%3Fy%23z"
        );
        assert_eq!(
            build_url(&base, "python:3.12", None, &[]).as_str(),
            "http://127.0.0.1:8080/v1/templates/python:3.12/build"
        );
        assert_eq!(
            build_url(
                &base,
                "py",
                Some("build/Dockerfile"),
                &[("A".into(), "1=2".into()), ("B".into(), "x y".into())]
            )
            .as_str(),
            "http://127.0.0.1:8080/v1/templates/py/build?dockerfile=build%2FDockerfile&buildarg=A%3D1%3D2&buildarg=B%3Dx+y"
        );
        let prefixed = parse_base_url("http://host/berth/").unwrap();
        assert_eq!(
            template_url(&prefixed, "py").as_str(),
            "http://host/berth/v1/templates/py"
        );
    }
}
