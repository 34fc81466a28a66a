/*
 * A small XML tree built with expat, for S3 and Azure response bodies.
 * Entities (&amp; &#x2F; ...) are decoded by expat, so object keys in
 * listings come out exactly as stored.  Namespaces are ignored: element
 * names are the local part.
 */
#ifndef SLUICE_XML_H
#define SLUICE_XML_H

#include <stddef.h>

struct xml_node {
  char *name;
  char *text; /* concatenated character data, never NULL */
  struct xml_node *parent;
  struct xml_node *child;      /* first child */
  struct xml_node *next;       /* next sibling */
  struct xml_node *last_child; /* for appending while parsing */
};

/* Deeper documents are refused (no store's response nests beyond 5). */
#define XML_MAX_DEPTH 64

/* Parses a document; returns NULL if it is not well-formed XML or nests
 * deeper than XML_MAX_DEPTH, with a one-line reason in err (may be NULL). */
struct xml_node *xml_parse_err(const char *data, size_t len, char *err,
                               size_t errlen);
struct xml_node *xml_parse(const char *data, size_t len);
void xml_free(struct xml_node *root);

/* First child element named `name` (NULL if none). */
struct xml_node *xml_child(const struct xml_node *n, const char *name);
/* Next sibling with the same name as n. */
struct xml_node *xml_next(const struct xml_node *n);
/* Text of the descendant at a '/'-separated path of child names below n,
 * e.g. xml_text(root, "Error/Code"); NULL if absent. */
const char *xml_text(const struct xml_node *n, const char *path);

#endif
