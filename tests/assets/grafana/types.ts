// Grafana's schema types as a dashboard JSON file must satisfy them.
//
// The schema declares string enums (e.g. BigValueColorMode) that a JSON string can never be
// assigned to, so Json<T> replaces each string enum by the union of its values ("value" |
// "background" | ...) and keeps everything else, including required and optional keys.
// Every panel is checked against the options and field config of its own plugin type.
import type { Dashboard, Panel, RowPanel } from '@grafana/schema';
import type { Options as TimeSeriesOptions, FieldConfig as TimeSeriesFieldConfig } from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';
import type { Options as StatOptions } from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type { Options as TableOptions, FieldConfig as TableFieldConfig } from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type { Options as BarGaugeOptions } from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';

export type Json<T> =
  T extends string ? `${T}` :
  T extends number | boolean | null | undefined ? T :
  T extends Array<infer U> ? Array<Json<U>> :
  T extends object ? { [K in keyof T]: Json<T[K]> } :
  T;

type Typed<K extends string, O, F = Record<string, unknown>> =
  Json<Omit<Panel<O, F>, 'type' | 'options'>> & { type: K; options: Json<O> };

export type CheckedPanel =
  | Typed<'timeseries', TimeSeriesOptions, TimeSeriesFieldConfig>
  | Typed<'stat', StatOptions>
  | Typed<'table', TableOptions, TableFieldConfig>
  | Typed<'bargauge', BarGaugeOptions>
  | (Json<Omit<RowPanel, 'type'>> & { type: 'row' });

export type CheckedDashboard = Omit<Json<Dashboard>, 'panels'> & { panels: CheckedPanel[] };
