//! Pagination over `{items, next_cursor}` lists: one page at a time, every page, or a stream.

use std::future::Future;

use futures_util::Stream;
use gofer_core::model::{MAX_PAGE_LIMIT, Page};

use crate::Error;

/// Which page of a list to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageOptions {
    /// Items per page (the server caps it at 500).
    pub limit: u32,
    /// The `next_cursor` of the previous page; `None` for the first page.
    pub cursor: Option<String>,
}

impl Default for PageOptions {
    fn default() -> Self {
        Self { limit: MAX_PAGE_LIMIT, cursor: None }
    }
}

impl PageOptions {
    /// The first page with `limit` items at most.
    pub fn first(limit: u32) -> Self {
        Self { limit, cursor: None }
    }
}

/// Every item of a list, following `next_cursor` until the last page. `fetch` reads one page:
/// `all_pages(|page| client.list_runs(&ns, &p, page))`.
pub async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, Error>
where
    F: FnMut(PageOptions) -> Fut,
    Fut: Future<Output = Result<Page<T>, Error>>,
{
    let mut items = Vec::new();
    let mut options = PageOptions::default();
    loop {
        let page = fetch(options.clone()).await?;
        items.extend(page.items);
        match page.next_cursor {
            Some(next) => options.cursor = Some(next),
            None => return Ok(items),
        }
    }
}

/// The items of a list as a stream, reading the next page only when the previous one is used up.
pub fn pages<T, F, Fut>(fetch: F) -> impl Stream<Item = Result<T, Error>>
where
    F: FnMut(PageOptions) -> Fut,
    Fut: Future<Output = Result<Page<T>, Error>>,
{
    struct State<T, F> {
        fetch: F,
        buffer: std::collections::VecDeque<T>,
        next: Option<PageOptions>,
    }
    let start = State { fetch, buffer: Default::default(), next: Some(PageOptions::default()) };
    futures_util::stream::unfold(start, |mut state| async move {
        loop {
            if let Some(item) = state.buffer.pop_front() {
                return Some((Ok(item), state));
            }
            let options = state.next.take()?;
            match (state.fetch)(options.clone()).await {
                Ok(page) => {
                    state.buffer.extend(page.items);
                    state.next = page.next_cursor.map(|cursor| PageOptions { cursor: Some(cursor), ..options });
                }
                Err(e) => return Some((Err(e), state)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    /// Pages of 2 over 0..5, as a server would answer them.
    async fn numbers(options: PageOptions) -> Result<Page<u32>, Error> {
        let start: u32 = options.cursor.map(|c| c.parse().expect("cursor")).unwrap_or(0);
        let items: Vec<u32> = (start..5).take(2).collect();
        let next_cursor = (start + 2 < 5).then(|| (start + 2).to_string());
        Ok(Page { items, next_cursor })
    }

    #[tokio::test]
    async fn every_page_is_read_in_order() {
        assert_eq!(all_pages(numbers).await.expect("pages"), vec![0, 1, 2, 3, 4]);
        let streamed: Vec<u32> = pages(numbers).map(|r| r.expect("item")).collect().await;
        assert_eq!(streamed, vec![0, 1, 2, 3, 4]);
    }
}
