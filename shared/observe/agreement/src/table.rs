//! Grades as given (item, grader, value) and the dense form the statistics read.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{AgreementError, Scale};

/// One grade's value: a numeric code (required for ordinal and interval scales, where the
/// number gives the order or the distance) or a label (nominal scales only).
///
/// As a category, `Number(1.0)` and `Text("1")` are different values. Categories are ordered
/// numbers first (ascending), then labels (by byte order); that order only matters for
/// nominal tie-breaking and the order of listed values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A numeric code, e.g. 1 to 5, or 0/1 for fail/pass.
    Number(f64),
    /// A label, e.g. `"pass"`.
    Text(String),
}

impl Value {
    /// The numeric code, if this is one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(x) => Some(*x),
            Value::Text(_) => None,
        }
    }

    fn cmp_category(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => a.total_cmp(b),
            (Value::Number(_), Value::Text(_)) => Ordering::Less,
            (Value::Text(_), Value::Number(_)) => Ordering::Greater,
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(x) => write!(f, "{x}"),
            Value::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// One criterion's grades: at most one value per (item, grader). Items and graders keep the
/// order in which they first appear, which is the order of every list in the results.
/// Missing grades are simply absent.
#[derive(Debug, Clone, Default)]
pub struct GradeTable {
    criterion: String,
    items: Vec<String>,
    item_index: HashMap<String, usize>,
    graders: Vec<String>,
    grader_index: HashMap<String, usize>,
    grades: Vec<(usize, usize, Value)>,
    seen: HashMap<(usize, usize), usize>,
}

impl GradeTable {
    /// An empty table for the named criterion.
    pub fn new(criterion: impl Into<String>) -> Self {
        GradeTable {
            criterion: criterion.into(),
            ..GradeTable::default()
        }
    }

    /// The criterion these grades are for.
    pub fn criterion(&self) -> &str {
        &self.criterion
    }

    /// Adds one grade. A second grade for the same (item, grader), or a number that is NaN or
    /// infinite, is refused and leaves the table as it was.
    pub fn add(
        &mut self,
        item: impl Into<String>,
        grader: impl Into<String>,
        value: Value,
    ) -> Result<(), AgreementError> {
        let (item, grader) = (item.into(), grader.into());
        if let Value::Number(x) = value
            && !x.is_finite()
        {
            return Err(AgreementError::NotFinite { item, grader });
        }
        let i = self.item_index.get(&item).copied();
        let g = self.grader_index.get(&grader).copied();
        if let (Some(i), Some(g)) = (i, g)
            && self.seen.contains_key(&(i, g))
        {
            return Err(AgreementError::Duplicate { item, grader });
        }
        let i = i.unwrap_or_else(|| {
            self.items.push(item.clone());
            self.item_index.insert(item, self.items.len() - 1);
            self.items.len() - 1
        });
        let g = g.unwrap_or_else(|| {
            self.graders.push(grader.clone());
            self.grader_index.insert(grader, self.graders.len() - 1);
            self.graders.len() - 1
        });
        self.seen.insert((i, g), self.grades.len());
        self.grades.push((i, g, value));
        Ok(())
    }

    /// Number of grades.
    pub fn len(&self) -> usize {
        self.grades.len()
    }

    /// Whether there are no grades.
    pub fn is_empty(&self) -> bool {
        self.grades.is_empty()
    }

    /// Items in first-seen order.
    pub fn items(&self) -> &[String] {
        &self.items
    }

    /// Graders in first-seen order.
    pub fn graders(&self) -> &[String] {
        &self.graders
    }

    /// The grade of `grader` for `item`, if any.
    pub fn get(&self, item: &str, grader: &str) -> Option<&Value> {
        let i = *self.item_index.get(item)?;
        let g = *self.grader_index.get(grader)?;
        self.seen.get(&(i, g)).map(|&k| &self.grades[k].2)
    }

    /// Every grade as (item, grader, value), in the order added.
    pub fn grades(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.grades
            .iter()
            .map(|(i, g, v)| (self.items[*i].as_str(), self.graders[*g].as_str(), v))
    }
}

/// The statistics' view: category indices in a grader-by-item grid, categories sorted.
pub(crate) struct Dense {
    /// Item ids, in table order.
    pub items: Vec<String>,
    /// Columns: the table's graders, then any extra column (a scorer).
    pub columns: usize,
    /// `cells[item * columns + column]`: the category index, if graded.
    pub cells: Vec<Option<u32>>,
    /// Categories in [`Value`] order.
    pub categories: Vec<Value>,
    /// Each category's numeric code (ordinal and interval scales only).
    pub codes: Option<Vec<f64>>,
}

impl Dense {
    /// Builds the grid from the table, plus one extra column from `extra` (item, value) when
    /// given; items only the extra column has are left out (nobody else graded them).
    pub fn build(
        table: &GradeTable,
        extra: Option<&[(String, Value)]>,
        scale: Scale,
    ) -> Result<Dense, AgreementError> {
        let mut values: Vec<&Value> = table.grades.iter().map(|(_, _, v)| v).collect();
        let mut extra_cells = Vec::new();
        if let Some(extra) = extra {
            let mut seen = HashMap::new();
            for (item, value) in extra {
                if let Value::Number(x) = value
                    && !x.is_finite()
                {
                    return Err(AgreementError::NotFinite {
                        item: item.clone(),
                        grader: "(scorer)".into(),
                    });
                }
                if seen.insert(item.as_str(), ()).is_some() {
                    return Err(AgreementError::Duplicate {
                        item: item.clone(),
                        grader: "(scorer)".into(),
                    });
                }
                if let Some(&i) = table.item_index.get(item) {
                    extra_cells.push((i, value));
                    values.push(value);
                }
            }
        }
        if scale != Scale::Nominal {
            let check = table
                .grades()
                .map(|(i, g, v)| (i.to_string(), g.to_string(), v))
                .chain(
                    extra_cells
                        .iter()
                        .map(|(i, v)| (table.items[*i].clone(), "(scorer)".to_string(), *v)),
                );
            for (item, grader, v) in check {
                if let Value::Text(label) = v {
                    return Err(AgreementError::NotNumeric {
                        item,
                        grader,
                        value: label.clone(),
                        scale,
                    });
                }
            }
        }
        values.sort_by(|a, b| a.cmp_category(b));
        values.dedup_by(|a, b| a.cmp_category(b) == Ordering::Equal);
        let categories: Vec<Value> = values.into_iter().cloned().collect();
        let index_of = |v: &Value| -> u32 {
            // Present by construction: every value was collected above.
            categories
                .binary_search_by(|c| c.cmp_category(v))
                .unwrap_or_default() as u32
        };
        let columns = table.graders.len() + usize::from(extra.is_some());
        let mut cells = vec![None; table.items.len() * columns];
        for (i, g, v) in &table.grades {
            cells[i * columns + g] = Some(index_of(v));
        }
        for (i, v) in extra_cells {
            cells[i * columns + columns - 1] = Some(index_of(v));
        }
        let codes = (scale != Scale::Nominal)
            .then(|| categories.iter().filter_map(Value::as_number).collect());
        Ok(Dense {
            items: table.items.clone(),
            columns,
            cells,
            categories,
            codes,
        })
    }

    pub fn cell(&self, item: usize, column: usize) -> Option<u32> {
        self.cells[item * self.columns + column]
    }

    pub fn row(&self, item: usize) -> &[Option<u32>] {
        &self.cells[item * self.columns..(item + 1) * self.columns]
    }
}
